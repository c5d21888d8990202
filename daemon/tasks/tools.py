"""The tools the Live model calls to run background tasks.

`start_task` answers at once ("started" and a short name): the work runs in
the TaskManager, never in the call. The others read or change the database
and answer in milliseconds too; only `cancel_task` also tells the service.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from daemon.live.calls import Tool, ToolError
from daemon.tasks.manager import TaskManager, TaskRefused

TOOL_NAMES = ("start_task", "task_status", "list_tasks", "cancel_task", "follow_up_task")
FrameSource = Callable[[], bytes | None]

_TASK_REF = {"type": "string", "maxLength": 80,
             "description": "The task's name (as start_task answered) or its id."}


def task_tools(manager: TaskManager, frame: FrameSource | None) -> list[Tool]:
    """The five task tools; `frame` gives the newest camera photo (JPEG) if there is one."""

    async def start(args: dict[str, Any]) -> dict[str, Any]:
        image = None
        if args.get("with_camera_photo"):
            image = frame() if frame is not None else None
            if image is None:
                raise ToolError("no camera photo is available; start it without one")
        return _refusal_to_tool_error(lambda: manager.start(
            args["request"], args.get("name", ""), image=image))

    async def status(args: dict[str, Any]) -> dict[str, Any]:
        return _refusal_to_tool_error(lambda: manager.view(args["task"]))

    async def listing(_: dict[str, Any]) -> dict[str, Any]:
        return {"tasks": manager.views(10)}

    async def cancel(args: dict[str, Any]) -> dict[str, Any]:
        try:
            return await manager.cancel(args["task"])
        except TaskRefused as exc:
            raise ToolError(str(exc)) from None

    async def follow_up(args: dict[str, Any]) -> dict[str, Any]:
        return _refusal_to_tool_error(lambda: manager.follow_up(args["task"], args["question"]))

    photo = ({"with_camera_photo": {"type": "boolean", "description":
              "Attach the glasses' newest camera photo (for 'what is this' questions)."}}
             if frame is not None else {})
    return [
        Tool("start_task", START_DESCRIPTION, _obj({
            "request": {"type": "string", "maxLength": 2000,
                        "description": "What to research or do, in full."},
            "name": {"type": "string", "maxLength": 40,
                     "description": "A short name for the task, 2-5 words."},
            **photo}, ["request", "name"]), start, deadline=2.0),
        Tool("task_status", "How a background task is going, or its result if it has "
             "finished.", _obj({"task": _TASK_REF}, ["task"]), status, deadline=2.0),
        Tool("list_tasks", "The recent background tasks and their states.", _obj({}, []),
             listing, deadline=2.0),
        Tool("cancel_task", "Stop a running background task (the user said stop it).",
             _obj({"task": _TASK_REF}, ["task"]), cancel, deadline=10.0),
        Tool("follow_up_task", "Ask a follow-up question about a finished background task; "
             "it continues with everything that task found and answers later, like a new task.",
             _obj({"task": _TASK_REF, "question": {"type": "string", "maxLength": 2000}},
                  ["task", "question"]), follow_up, deadline=2.0),
    ]


START_DESCRIPTION = (
    "Start a long background task (research, comparisons, 'what is this and how do I care "
    "for it' with a photo) that takes minutes. Answers at once with 'started' and the "
    "task's name; tell the user it is running. When it finishes, its result is given to "
    "you to tell the user."
)


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required,
            "additionalProperties": False}


def _refusal_to_tool_error(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return call()
    except TaskRefused as exc:
        raise ToolError(str(exc)) from None
