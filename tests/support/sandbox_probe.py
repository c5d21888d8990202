"""Inside the unit's sandbox: does each native library the daemon loads do its work?

Run by tests/integration/test_systemd_unit.py under `sandbox.run_unit` with the
venv's Python. MemoryDenyWriteExecute= refuses writable+executable memory; the usual
suspects are JITs and libffi closures (ctypes and cffi callbacks), so each library is
made to do real work here, not merely imported. Prints one JSON line: "ok" or the
error for each, and what the sandbox looks like from inside.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import socket
import ssl
import sys
from collections.abc import Callable

PR_GET_MDWE = 66
PROT_READ, PROT_EXEC = 0x1, 0x4

libc = ctypes.CDLL(None, use_errno=True)


def _status(key: str) -> str:
    with open("/proc/self/status", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return line.split()[1]
    return "?"


def _refused(action: Callable[[], object]) -> str:
    try:
        action()
    except OSError:
        return "refused"
    return "allowed"


def _mprotect_exec() -> None:
    m = mmap.mmap(-1, mmap.PAGESIZE)
    address = ctypes.addressof(ctypes.c_char.from_buffer(m))
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    result = libc.mprotect(address, mmap.PAGESIZE, PROT_READ | PROT_EXEC)
    if result != 0:
        raise OSError(ctypes.get_errno(), "mprotect")


def opus() -> None:
    """libopus through opuslib (ctypes): encode and decode 20 ms of a tone."""
    import numpy as np
    import opuslib

    pcm = (np.sin(np.arange(320) / 5) * 8000).astype("<i2").tobytes()
    enc = opuslib.Encoder(16_000, 1, opuslib.APPLICATION_VOIP)
    dec = opuslib.Decoder(16_000, 1)
    assert len(dec.decode(enc.encode(pcm, 320), 320)) == 640


def resample() -> None:
    """soxr: 24 kHz model audio to 16 kHz."""
    import numpy as np
    import soxr

    out = soxr.resample(np.zeros(2400, dtype=np.float32), 24_000, 16_000)
    assert len(out) == 1600


def numeric() -> None:
    """numpy with its BLAS (threads) and FFT."""
    import numpy as np

    a = np.random.default_rng(1).standard_normal((300, 300))
    assert np.allclose(a @ np.linalg.inv(a), np.eye(300), atol=1e-6)
    assert np.fft.rfft(np.ones(512))[0] == 512


def ctypes_callback() -> None:
    """A libffi closure: qsort calling back into Python through ctypes."""
    cmp_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                                ctypes.POINTER(ctypes.c_int))
    values = (ctypes.c_int * 5)(5, 1, 4, 2, 3)
    libc.qsort(values, 5, ctypes.sizeof(ctypes.c_int),
               cmp_type(lambda a, b: a[0] - b[0]))
    assert list(values) == [1, 2, 3, 4, 5]


def cffi_callback() -> None:
    """cffi's ffi.callback: it needs write+execute memory, so MemoryDenyWriteExecute=
    must refuse it (proof that the filter is on). Nothing the daemon loads calls it."""
    import cffi  # type: ignore[import-untyped]

    ffi = cffi.FFI()
    ffi.cdef("void qsort(void *, size_t, size_t, int(*)(const void *, const void *));")
    c = ffi.dlopen(None)

    @ffi.callback("int(const void *, const void *)")  # type: ignore[untyped-decorator]
    def cmp(a: object, b: object) -> int:
        return int(ffi.cast("int *", a)[0] - ffi.cast("int *", b)[0])

    values = ffi.new("int[]", [3, 1, 2])
    c.qsort(values, 3, ffi.sizeof("int"), cmp)
    assert list(values) == [1, 2, 3]


def tls() -> None:
    """A TLS 1.3 handshake and a record each way (OpenSSL), certificates from trustme."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("live.test")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    a, b = socket.socketpair()
    with a, b:
        import threading

        def serve() -> None:
            with server_ctx.wrap_socket(b, server_side=True) as s:
                s.sendall(s.recv(5))

        t = threading.Thread(target=serve)
        t.start()
        with client_ctx.wrap_socket(a, server_hostname="live.test") as c:
            c.sendall(b"hello")
            assert c.recv(5) == b"hello"
        t.join(10)


def cryptography_aead() -> None:
    """cryptography's Rust and OpenSSL parts."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = AESGCM.generate_key(bit_length=128)
    box = AESGCM(key)
    assert box.decrypt(b"0" * 12, box.encrypt(b"0" * 12, b"data", None), None) == b"data"


def bumble_stack() -> None:
    """Bumble's crypto (pairing) and its HCI packet parsing."""
    from bumble import hci
    from bumble.crypto.cryptography import EccKey, aes_cmac

    assert len(aes_cmac(b"\0" * 16, b"\1" * 16)) == 16
    a, b = EccKey.generate(), EccKey.generate()  # LE Secure Connections
    assert a.dh(b.x, b.y) == b.dh(a.x, a.y)
    packet = hci.HCI_Reset_Command()
    parsed = hci.HCI_Packet.from_bytes(bytes(packet))
    assert isinstance(parsed, hci.HCI_Command) and parsed.op_code == packet.op_code


def genai() -> None:
    """The google-genai SDK and pydantic-core: a client and a Live configuration."""
    from google import genai as sdk
    from google.genai import types

    client = sdk.Client(api_key="probe-key", http_options={"api_version": "v1beta"})
    config = types.LiveConnectConfig(response_modalities=[types.Modality.AUDIO])
    assert client.aio.live is not None and config.response_modalities


def portaudio() -> None:
    """PortAudio and ALSA (a kiosk): initialise and list devices."""
    import pyaudio

    pa = pyaudio.PyAudio()
    try:
        pa.get_device_count()
    finally:
        pa.terminate()


CHECKS: dict[str, Callable[[], None]] = {
    "opus": opus, "soxr": resample, "numpy": numeric, "ctypes_callback": ctypes_callback,
    "cffi_callback": cffi_callback, "ssl": tls, "cryptography": cryptography_aead,
    "bumble": bumble_stack, "genai": genai, "pyaudio": portaudio,
}


def load_the_daemon() -> list[str]:
    """Import every module of the daemon (all its native extensions with them); the cffi
    modules among them (cryptography loads cffi's backend, but calls no ffi.callback)."""
    import importlib
    import pkgutil

    import daemon

    for info in pkgutil.walk_packages(daemon.__path__, "daemon."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    return sorted(name for name in sys.modules if name.split(".")[0] in {"cffi", "_cffi_backend"})


def main() -> None:
    """Every check, then the sandbox as seen from inside, as one JSON line."""
    result: dict[str, object] = {}
    try:
        result["cffi_modules_of_the_daemon"] = load_the_daemon()
        result["daemon_loaded"] = "ok"
    except Exception as exc:  # reported, not raised
        result["daemon_loaded"] = f"{type(exc).__name__}: {exc}"
    for name, check in CHECKS.items():
        try:
            check()
            result[name] = "ok"
        except Exception as exc:  # reported, not raised: the test names the library
            result[name] = f"{type(exc).__name__}: {exc}"
    result["mdwe"] = libc.prctl(PR_GET_MDWE, 0, 0, 0, 0)
    result["wx_mmap"] = _refused(
        lambda: mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE
                          | mmap.PROT_EXEC))
    result["mprotect_exec"] = _refused(_mprotect_exec)
    result["netlink"] = _refused(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW))
    result["seccomp"] = _status("Seccomp")
    result["cap_bnd"] = _status("CapBnd")
    sys.stdout.flush()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
