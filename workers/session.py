"""One shard's gateway session: what RESUME needs (id, seq, resume URL), the checkpoint
another process resumes from, and the bookkeeping of the skip rule for a replay that keeps
failing at the same point.

``seq`` is the last seq *received* (what this process resumes with: everything up to it is
already in the handler's backlog). The checkpoint is the last seq the handler *finished*:
what a new process must resume from so that nothing in flight is lost (at-least-once)."""

from __future__ import annotations

from typing import Final

from workers import decisions, ipc

# Connect failures on resume_gateway_url in a row; past a few, RESUME is tried on the main
# URL instead (it accepts resumes, it only drops them sooner).
RESUME_URL_ATTEMPTS: Final = 3


class Session:
    __slots__ = (
        "_bad_at",
        "_bad_repeats",
        "duplicates",
        "epoch",
        "epoch_start_seq",
        "resume_url",
        "resume_url_failures",
        "seq",
        "session_id",
        "skip_one",
        "skipped",
    )

    def __init__(self, given: ipc.SessionInfo | None = None) -> None:
        self.session_id: str | None = given.session_id if given else None
        self.resume_url: str | None = given.resume_url if given else None
        self.seq = given.seq if given else 0
        # Sessions of this shard are numbered so the checkpoint never mixes two of them:
        # the handler reports (epoch, seq) of what it finished.
        self.epoch = 0
        self.epoch_start_seq = self.seq
        # Replayed dispatches dropped as already received.
        self.duplicates = 0
        # Events dropped because even their replay could not be taken.
        self.skipped = 0
        # Where (session, seq) the last bad payload hit, and how many times in a row.
        self._bad_at: tuple[str | None, int] | None = None
        self._bad_repeats = 0
        self.skip_one = False
        self.resume_url_failures = 0

    @property
    def resumable(self) -> bool:
        return self.session_id is not None and self.resume_url is not None

    def info(self) -> ipc.SessionInfo | None:
        """The session as of the last event received."""
        if self.session_id is None or self.resume_url is None:
            return None
        return ipc.SessionInfo(self.session_id, self.seq, self.resume_url)

    def checkpoint(self, handled: tuple[int, int] | None) -> ipc.SessionInfo | None:
        """The session as of the last event the handler finished; ``handled`` is the
        handler's (epoch, seq), None before it finished any."""
        if self.session_id is None or self.resume_url is None:
            return None
        if handled is not None and handled[0] == self.epoch:
            seq = handled[1]
        else:
            seq = self.epoch_start_seq
        return ipc.SessionInfo(self.session_id, seq, self.resume_url)

    def start(self, session_id: str, resume_url: str) -> None:
        """READY: a new session, numbered apart from the previous one."""
        self.session_id = session_id
        self.resume_url = resume_url
        self.epoch += 1
        self.epoch_start_seq = 0

    def drop(self) -> None:
        self.session_id = None
        self.resume_url = None
        self.seq = 0

    def bad_payload(self) -> bool:
        """Count a bad payload at the current point; True when the event there is now to
        be skipped on the next resume (``decisions.should_skip_event``)."""
        here = (self.session_id, self.seq)
        if self.session_id is not None and self._bad_at == here:
            self._bad_repeats += 1
        else:
            self._bad_at = here
            self._bad_repeats = 1
        if not decisions.should_skip_event(self._bad_repeats):
            return False
        self.skip_one = True
        self._bad_repeats = 0
        self._bad_at = None
        return True

    def take_skip(self) -> bool:
        """At a RESUME: move past the event marked for skipping, if any."""
        if not self.skip_one:
            return False
        self.skip_one = False
        self.seq += 1
        self.skipped += 1
        return True

    def connect_base(self, main_url: str) -> tuple[str, bool]:
        """Where the next connection goes and whether it will resume."""
        resume = self.resumable
        if resume and self.resume_url and self.resume_url_failures < RESUME_URL_ATTEMPTS:
            return self.resume_url, resume
        return main_url, resume

    def connect_failed(self, resume: bool) -> None:
        self.resume_url_failures += resume

    def connect_succeeded(self) -> None:
        self.resume_url_failures = 0
