"""Token layout of one TIMAR turn.

One turn of F motion frames is 4F + 10 tokens, in the official order::

    <TURN> <U_SPEECH> su[F] </U_SPEECH> <U_MOTION> mu[F] </U_MOTION>
           <A_SPEECH> sa[F] </A_SPEECH> <A_MOTION> ma[F] </A_MOTION> </TURN>

The ten separators are rows 0..9 of the learned ``sep_tok_emb`` table, in the order of
``SEPARATORS``. This module is pure numpy so the PyTorch model, the exporter and the engine
share one definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

SEPARATORS: tuple[str, ...] = (
    "<TURN>",
    "<USER_SPEECH>",
    "</USER_SPEECH>",
    "<USER_MOTION>",
    "</USER_MOTION>",
    "<AGENT_SPEECH>",
    "</AGENT_SPEECH>",
    "<AGENT_MOTION>",
    "</AGENT_MOTION>",
    "</TURN>",
)

# token_type labels (as in the reference implementation)
SPECIAL, USER_SPEECH, USER_MOTION, AGENT_SPEECH, AGENT_MOTION = range(5)
# role labels
ROLE_USER, ROLE_AGENT, ROLE_SPECIAL = range(3)


@dataclass(frozen=True)
class TurnLayout:
    """Positions of every stream inside one turn of ``frames`` motion frames."""

    frames: int

    @property
    def length(self) -> int:
        return 4 * self.frames + len(SEPARATORS)

    def _stream_start(self, stream: int) -> int:
        # each stream block is <open> frames[F] <close>; the turn opens with <TURN>
        return 1 + stream * (self.frames + 2) + 1

    @property
    def user_speech(self) -> slice:
        s = self._stream_start(0)
        return slice(s, s + self.frames)

    @property
    def user_motion(self) -> slice:
        s = self._stream_start(1)
        return slice(s, s + self.frames)

    @property
    def agent_speech(self) -> slice:
        s = self._stream_start(2)
        return slice(s, s + self.frames)

    @property
    def agent_motion(self) -> slice:
        s = self._stream_start(3)
        return slice(s, s + self.frames)

    @cached_property
    def separator_positions(self) -> np.ndarray:
        """Position in the turn of separator i (i indexes ``SEPARATORS``)."""
        f = self.frames
        pos = [0]
        for stream in range(4):
            start = self._stream_start(stream)
            pos += [start - 1, start + f]
        pos.append(self.length - 1)
        return np.asarray(pos, dtype=np.int64)

    @cached_property
    def token_type(self) -> np.ndarray:
        tt = np.full(self.length, SPECIAL, dtype=np.int64)
        tt[self.user_speech] = USER_SPEECH
        tt[self.user_motion] = USER_MOTION
        tt[self.agent_speech] = AGENT_SPEECH
        tt[self.agent_motion] = AGENT_MOTION
        return tt

    @cached_property
    def role(self) -> np.ndarray:
        role = np.full(self.length, ROLE_SPECIAL, dtype=np.int64)
        role[self.token_type == USER_SPEECH] = ROLE_USER
        role[self.token_type == USER_MOTION] = ROLE_USER
        role[self.token_type == AGENT_SPEECH] = ROLE_AGENT
        role[self.token_type == AGENT_MOTION] = ROLE_AGENT
        return role

    def interleave(
        self,
        separators: np.ndarray,
        user_speech: np.ndarray,
        user_motion: np.ndarray,
        agent_speech: np.ndarray,
        agent_motion: np.ndarray,
    ) -> np.ndarray:
        """Tokens of one turn, (4F+10, D), from the four (F, D) streams and the (10, D) table."""
        out = np.empty((self.length, separators.shape[-1]), dtype=np.float32)
        out[self.separator_positions] = separators
        out[self.user_speech] = user_speech
        out[self.user_motion] = user_motion
        out[self.agent_speech] = agent_speech
        out[self.agent_motion] = agent_motion
        return out
