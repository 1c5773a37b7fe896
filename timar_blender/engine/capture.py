"""Where live audio comes from (bpy-free): a microphone through sounddevice/PortAudio, or a wave
played as if it were one (benchmarks, tests, demos without a sound card).

A source delivers mono float32 blocks at its own ``rate`` to ``on_audio(block, arrival_time)`` from
its own thread, and reports failures (a device that vanishes) to ``on_error(message)`` instead of
raising where nobody would see it. ``on_audio`` returning False asks the source to stop delivering.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .contract import SPEECH_RATE

OnAudio = Callable[[np.ndarray, float], bool]
OnError = Callable[[str], None]

# 16 kHz first (no resampling), then what microphones commonly offer
RATE_CANDIDATES = (SPEECH_RATE, 48_000, 44_100, 32_000, 22_050, 96_000, 88_200, 24_000, 8_000)


class CaptureError(RuntimeError):
    """A microphone that cannot be used; the message says which one and why."""


class Source(Protocol):
    name: str
    rate: int

    def start(self, on_audio: OnAudio, on_error: OnError) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    hostapi: str
    channels: int
    default_rate: int

    @property
    def label(self) -> str:
        """Unique across host APIs (the same microphone can appear under ALSA and PulseAudio)."""
        return f"{self.name}, {self.hostapi}"


def _sounddevice():
    try:
        import sounddevice
    except OSError as exc:  # the module is there but the PortAudio library is not
        msg = "no audio input: the PortAudio library is missing (Linux: install libportaudio2)"
        raise CaptureError(f"{msg}: {exc}") from exc
    except ImportError as exc:
        raise CaptureError(f"no audio input available: the sounddevice module is missing ({exc})") from exc
    return sounddevice


def input_devices() -> list[InputDevice]:
    """Every device with input channels, as PortAudio sees them now."""
    sd = _sounddevice()
    apis = [a["name"] for a in sd.query_hostapis()]
    return [
        InputDevice(d["index"], d["name"], apis[d["hostapi"]], d["max_input_channels"], round(d["default_samplerate"]))
        for d in sd.query_devices()
        if d["max_input_channels"] > 0
    ]


def refresh_devices() -> None:
    """Re-scan devices (PortAudio lists them once, at start-up): for a microphone plugged in later."""
    sd = _sounddevice()
    sd._terminate()
    sd._initialize()


def find_device(spec: str | None) -> InputDevice:
    """The device named ``spec`` (its label, its name, or a unique part of either); empty: the default."""
    sd = _sounddevice()
    devices = input_devices()
    if not devices:
        raise CaptureError("no microphone found: the system lists no audio input devices")
    if not spec:
        default = sd.default.device[0]
        if default is None or default < 0:
            default = sd.query_hostapis(0).get("default_input_device", -1)
        for d in devices:
            if d.index == default:
                return d
        raise CaptureError("no default microphone: choose an input device")
    for exact in (lambda d: d.label == spec, lambda d: d.name == spec):
        found = [d for d in devices if exact(d)]
        if found:
            return found[0]
    low = spec.lower()
    found = [d for d in devices if low in d.label.lower()]
    if len(found) == 1:
        return found[0]
    names = ", ".join(repr(d.label) for d in devices)
    if not found:
        raise CaptureError(f"microphone {spec!r} not found (unplugged?); input devices: {names}")
    raise CaptureError(f"{spec!r} matches several input devices: {', '.join(repr(d.label) for d in found)}")


def choose_rate(refusal: Callable[[int], str | None], default_rate: int, requested: int | None = None) -> int:
    """A capture rate the device accepts: ``requested``, else 16 kHz, the device's own, then the usual ones.

    ``refusal(rate)`` is None when the device takes ``rate``, else its reason. Anything but 16 kHz is
    resampled by the session."""
    if requested:
        why = refusal(requested)
        if why:
            raise CaptureError(f"the microphone refuses {requested} Hz ({why}); leave the rate on automatic")
        return requested
    tried = {}
    for rate in dict.fromkeys((SPEECH_RATE, int(default_rate), *RATE_CANDIDATES)):
        why = refusal(rate)
        if why is None:
            return rate
        tried[rate] = why
    listing = "; ".join(f"{r} Hz: {w}" for r, w in tried.items())
    raise CaptureError(f"the microphone accepts none of the usual sample rates ({listing})")


class SoundDeviceSource:
    """A PortAudio input stream (16-bit, the device's channels mixed to mono), 20 ms blocks."""

    def __init__(self, device: str | None = None, rate: int | None = None, block_seconds: float = 0.02) -> None:
        self._sd = sd = _sounddevice()
        self.device = find_device(device)
        self.name = self.device.label
        mono = self._refusal(SPEECH_RATE, 1) is None or self._refusal(self.device.default_rate, 1) is None
        self.channels = 1 if mono else min(2, self.device.channels)  # some hardware only opens in stereo

        def refusal(r: int) -> str | None:
            return self._refusal(r, self.channels)

        try:
            self.rate = choose_rate(refusal, self.device.default_rate, rate)
        except CaptureError as exc:
            raise CaptureError(f"{self.name!r}: {exc}") from None
        self.blocksize = max(1, round(self.rate * block_seconds))
        self.overflows = 0
        self._stream = None
        self._ended = threading.Event()  # stopped on purpose (stop() or on_audio said enough)
        self._sd_error = sd.PortAudioError

    def _refusal(self, rate: int, channels: int) -> str | None:
        try:
            self._sd.check_input_settings(self.device.index, channels=channels, dtype="int16", samplerate=rate)
        except Exception as exc:  # PortAudioError or ValueError, with PortAudio's reason
            return str(exc.args[0] if exc.args else exc)
        return None

    def start(self, on_audio: OnAudio, on_error: OnError) -> None:
        sd = self._sd

        def callback(indata, frames, time_info, status) -> None:
            now = time.perf_counter()
            if status.input_overflow:
                self.overflows += 1
            if self._ended.is_set():
                raise sd.CallbackStop
            x = indata[:, 0] if indata.shape[1] == 1 else indata.mean(axis=1)
            if not on_audio(x.astype(np.float32) / 32768.0, now):
                self._ended.set()
                raise sd.CallbackStop

        def finished() -> None:
            if not self._ended.is_set():
                on_error(f"the microphone {self.name!r} stopped delivering audio (unplugged?)")

        try:
            self._stream = sd.InputStream(
                device=self.device.index,
                channels=self.channels,
                samplerate=self.rate,
                dtype="int16",
                blocksize=self.blocksize,
                callback=callback,
                finished_callback=finished,
            )
            self._stream.start()
        except (self._sd_error, ValueError) as exc:
            raise CaptureError(f"cannot open the microphone {self.name!r} at {self.rate} Hz: {exc}") from exc

    def stop(self) -> None:
        self._ended.set()
        stream, self._stream = self._stream, None
        if stream is None:
            return
        try:
            stream.stop()
            stream.close()
        except self._sd_error:  # the device is already gone: nothing left to release
            pass


class WaveSource:
    """A recorded wave delivered block by block like a microphone: in real time or as fast as possible.

    ``fail_at_end`` reports that message when the wave runs out (a device that disappears); without
    it the source just goes quiet, as a stalled device does."""

    def __init__(
        self,
        wave: np.ndarray,
        rate: int,
        *,
        realtime: bool = True,
        block_seconds: float = 0.02,
        fail_at_end: str | None = None,
        name: str = "wave",
    ) -> None:
        self.wave = np.asarray(wave, dtype=np.float32)
        self.rate, self.realtime, self.name = int(rate), realtime, name
        self.blocksize = max(1, round(self.rate * block_seconds))
        self.fail_at_end = fail_at_end
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, on_audio: OnAudio, on_error: OnError) -> None:
        def run() -> None:
            t0 = time.perf_counter()
            for start in range(0, len(self.wave), self.blocksize):
                block = self.wave[start : start + self.blocksize].copy()
                if self.realtime:  # the block is complete when its last sample "was spoken"
                    delay = t0 + (start + len(block)) / self.rate - time.perf_counter()
                    if delay > 0 and self._stop.wait(delay):
                        return
                if self._stop.is_set() or not on_audio(block, time.perf_counter()):
                    return
            if self.fail_at_end and not self._stop.is_set():
                on_error(self.fail_at_end)

        self._thread = threading.Thread(target=run, name=f"timar-source-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)


def seconds_to_samples(seconds: float | None, rate: int) -> int | None:
    return None if seconds is None or seconds <= 0 else math.ceil(seconds * rate)
