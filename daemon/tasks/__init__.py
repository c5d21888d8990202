"""Background tasks through the Interactions API: start, poll, deliver once, survive restarts.

`tools` offers start_task, task_status, list_tasks, cancel_task and
follow_up_task to the Live model; `manager` runs them (a poller per task with
`schedule`'s backoff, one deliverer that waits for a quiet moment); `store`
keeps them in SQLite in the state directory; `client` is the only code here
that touches google-genai (the `sdk-in-live` contract in .importlinter says
why); `result` is the structured answer and its checks; `metrics` counts.
`fallback` is the fallback road (turn-based while Live is down): `road` decides
the road, `utterance` cuts the microphone's stream.
"""
