"""A protocol-faithful fake of the Gemini Live API (BidiGenerateContent over WSS).

It stands in for Google's service so the real google-genai SDK can be driven
end to end with no internet: the demo, the integration tests and the
benchmarks all talk to it over TLS on loopback. It is deliberately strict where
the real service is strict (path, API key, first message ``setup``, unknown
fields -> close 1007) and lenient where the SDK is inconsistent (snake_case and
camelCase keys, both base64 alphabets, padding optional).

What it does on the wire, in order, for one scripted turn (see
``simulator.scenario`` for the script format)::

    <- setupComplete, sessionResumptionUpdate{newHandle, resumable:true}
    -> realtimeInput audio ... (speech, then >= silence_ms of silence)
    <- sessionResumptionUpdate{resumable:false}           # generating
    <- serverContent{inputTranscription{text}} (word pieces)
    <- toolCall{functionCalls:[{id,name,args}]}            # if scripted
    -> toolResponse{functionResponses:[{id,name,response}]}
    <- sessionResumptionUpdate{newHandle, resumable:true}  # response consumed
    <- sessionResumptionUpdate{resumable:false}
    <- serverContent{outputTranscription} / serverContent{modelTurn{inlineData}}
       ... alternating, ~chunk_ms of 24 kHz PCM per modelTurn
    <- serverContent{generationComplete:true}
    <- usageMetadata{promptTokenCount, responseTokenCount, totalTokenCount}
    <- serverContent{turnComplete:true}
    <- sessionResumptionUpdate{newHandle, resumable:true}

Faithful details: transcriptions are only sent when the setup asked for them
(``inputAudioTranscription`` / ``outputAudioTranscription``), resumption
updates only when the setup carried ``sessionResumption`` (``{}`` is enough),
and with ``realtimeInputConfig.automaticActivityDetection.disabled`` only
activityStart/activityEnd delimit speech. Barge-in sends
``serverContent{interrupted:true}`` then ``turnComplete``. A reply that was
being streamed when its connection dropped is lost (the script moves on); a
tool call that was pending is carried by the session and may be answered on
a connection that resumed it. An answer to a call the session already got an
answer for (a client resending one it could not know had arrived) is ignored
and recorded in ``duplicate_tool_responses`` (and, like every answer to no
pending call, in ``unexpected_tool_responses``): the service documents no
error for it, and closing the session would punish the careful client.

Faults (:class:`Fault`) can be injected at once with :meth:`FakeLiveServer.inject`
or armed on a scripted point with :meth:`FakeLiveServer.arm` (:class:`Trigger`)
so tests are deterministic. Everything received is recorded with
``time.monotonic()`` (system-wide on Linux, so another process can compare).

The parts: ``server`` (the endpoint, handshake, setup), ``client_input`` (what
the client sends), ``turns`` (what the model says), ``faults``, ``sessions``,
``records`` (what tests read), ``protocol`` (the wire format), ``vad``,
``connection``, ``cli`` (``edge-agent sim live``).
"""

from simulator.live_server.cli import main
from simulator.live_server.faults import ArmedFault, Fault, Trigger
from simulator.live_server.protocol import decode_base64
from simulator.live_server.records import (
    ConnectionRecord,
    ReceivedAudio,
    ReceivedMessage,
    ReceivedVideo,
    Recordings,
    RejectedHandshake,
    SentMessage,
    ToolCallRecord,
    ToolCancellationRecord,
    ToolResponseRecord,
    TurnRecord,
    UtteranceRecord,
)
from simulator.live_server.server import FakeLiveServer
from simulator.live_server.sessions import SessionState
from simulator.live_server.vad import EndOfUtteranceDetector, VadEvent

__all__ = [
    "ArmedFault",
    "ConnectionRecord",
    "EndOfUtteranceDetector",
    "FakeLiveServer",
    "Fault",
    "ReceivedAudio",
    "ReceivedMessage",
    "ReceivedVideo",
    "Recordings",
    "RejectedHandshake",
    "SentMessage",
    "SessionState",
    "ToolCallRecord",
    "ToolCancellationRecord",
    "ToolResponseRecord",
    "Trigger",
    "TurnRecord",
    "UtteranceRecord",
    "VadEvent",
    "decode_base64",
    "main",
]
