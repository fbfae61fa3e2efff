"""Emoncms export: the HTTP client of the input API, and the policy that delivers the queue.

Wire facts (from the Emoncms source): samples go to `POST {url}/input/bulk?time=0` as the form
field `data=[[t, "node", {"name": value, ...}], ...]` with absolute unix times (never `offset`,
whose sign the server inverts). The write API key travels only in `Authorization: Bearer <key>`;
it never appears in a URL, a log line, an exception message or a repr. Only the body `ok` or
`{"success": true}` means success; everything else is a failure of one of three kinds:

- `EmoncmsAuthError`: the key cannot write (401, or the empty 200 a read key gets);
- `EmoncmsRejectedError`: Emoncms read the data and refused it (`{"success": false, ...}`);
- `EmoncmsConnectionError`: no usable answer (network, timeout, 5xx, 406, a redirect, or a reply
  that is not Emoncms's, such as a captive portal's HTML page or the `false` of an unknown action).

`EmoncmsSender` drains an `ExportQueue` through a client: batches oldest first, isolates a
rejected ("poison") sample by splitting its batch, retries outages with backoff and logs one line
when an outage starts and one when it ends, and pauses when the key is refused.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Final

import aiohttp
from yarl import URL

from .queue import ExportQueue, Sample

_LOGGER = logging.getLogger(__name__)

DEFAULT_URL: Final = "https://emoncms.org"
DEFAULT_TIMEOUT: Final = 10.0  # seconds, for every request
PROJECT_URL: Final = "https://github.com/shelly-energy-monitor/shelly_energy"

# Rows per input/bulk post. emonhub, the reference client of emoncms.org, posts up to 100 rows
# (1000 in recent versions) every 30 s. 200 rows of ~10 inputs make ~50 kB, far below PHP's
# default 8 MB post limit, and the server stores them well within the request timeout: a post
# that times out is sent again whole, so batches stay small enough to be answered in time.
DEFAULT_BATCH_SIZE: Final = 200

MAX_NODE_NAME: Final = 16  # emoncms.org's limits; self-hosted servers accept these too
MAX_INPUT_NAME: Final = 64

RETRY_FIRST: Final = 5.0  # seconds after the first failed attempt, doubling...
RETRY_MAX: Final = 300.0  # ...up to 5 minutes
RETRY_JITTER: Final = 0.2  # ±20 %, so that many installations do not retry in step

_REJECTED_NAME_CHARACTERS = re.compile(r"[^\w\s.-]")  # Emoncms keeps letters, digits, _ - . space
_WHITESPACE = re.compile(r"\s+")
_EXCERPT_LENGTH = 200


class EmoncmsError(Exception):
    """Emoncms did not accept the data."""


class EmoncmsAuthError(EmoncmsError):
    """The API key cannot write: it is invalid, or it is the read key."""


class EmoncmsRejectedError(EmoncmsError):
    """Emoncms read the data and refused it, e.g. as malformed; the message is the server's."""


class EmoncmsConnectionError(EmoncmsError):
    """No usable answer from Emoncms: unreachable, too slow, failing, or not Emoncms at all."""


def _clean_name(name: str, max_length: int) -> str:
    """Return the name as Emoncms stores it: allowed characters, single spaces, bounded length."""
    kept = _WHITESPACE.sub(" ", _REJECTED_NAME_CHARACTERS.sub("", name)).strip()
    return kept[:max_length].rstrip()


@lru_cache(maxsize=256)
def clean_node_name(name: str) -> str:
    """Return a node name Emoncms keeps as is, e.g. "Pro 3EM (Garage)!" -> "Pro_3EM_Garage".

    Emoncms silently removes any character but letters, digits, `_`, `-`, `.` and space, and
    emoncms.org refuses node names longer than 16 characters. Spaces become `_`: a node name is
    part of Emoncms' URLs (`/input/get/<node>`). An empty result means the name has no usable
    character: the configuration must refuse it.
    """
    return _clean_name(name, MAX_NODE_NAME).replace(" ", "_")


@lru_cache(maxsize=1024)
def clean_input_name(name: str) -> str:
    """Return an input name Emoncms keeps as is (the rules of node names, up to 64 characters)."""
    return _clean_name(name, MAX_INPUT_NAME)


def sendable_values(values: Mapping[str, object]) -> dict[str, float]:
    """Return the values Emoncms may receive, under clean input names.

    Only finite numbers are kept. Emoncms casts null, booleans and strings to numbers (null
    becomes 0, a reading that was never made), and a NaN or infinity is not JSON at all: it would
    make the server refuse the whole post. So such a value is left out, and so is a name with no
    usable character.
    """
    sendable: dict[str, float] = {}
    for name, value in values.items():
        if isinstance(value, float):
            if not math.isfinite(value):
                continue
        elif not isinstance(value, int) or isinstance(value, bool):
            continue
        if clean_name := clean_input_name(name):
            sendable[clean_name] = value
    return sendable


class EmoncmsClient:
    """Posts samples to one Emoncms account with its write API key.

    `url` is the Emoncms root, possibly below a path (`http://host/emoncms`); a query string is
    dropped so that a pasted key cannot travel in URLs.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        write_key: str,
        *,
        version: str,
        url: str = DEFAULT_URL,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        root = URL(url).with_query(None).with_fragment(None)
        if root.scheme not in ("http", "https") or not root.host:
            raise ValueError(f"not an http(s) URL: {root}")
        self._url = str(root).rstrip("/")
        self._session = session
        self._write_key = write_key
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._user_agent = f"ShellyEnergyMonitor/{version} (+{PROJECT_URL})"

    def __repr__(self) -> str:
        """Return the client's description, without its key."""
        return f"EmoncmsClient(url={self._url!r})"

    @property
    def url(self) -> str:
        """Return the Emoncms root the client posts to."""
        return self._url

    def replace_key(self, write_key: str) -> None:
        """Use another write API key from now on."""
        self._write_key = write_key

    async def post_bulk(self, rows: Iterable[tuple[int, str, Mapping[str, object]]]) -> None:
        """Post rows of (unix time, node, {input: value}) in one input/bulk request.

        Names are cleaned and unsendable values left out (see `sendable_values`); a row left
        with no value is not sent, and nothing is posted when no row is left. Raises an
        `EmoncmsError` unless Emoncms answers success.
        """
        await self.post_samples(
            [
                Sample(time, clean_node_name(node), sendable)
                for time, node, values in rows
                if (sendable := sendable_values(values))
            ]
        )

    async def post_samples(self, samples: Sequence[Sample]) -> None:
        """Post samples already made sendable (as `EmoncmsSender.record` queues them).

        Nothing is posted when there is no sample. Raises an `EmoncmsError` unless Emoncms
        answers success.
        """
        if samples:
            data = json.dumps(samples, separators=(",", ":"))  # each Sample is a [t, node, {}] row
            self._check_reply(*await self._post_bulk_data(data))

    async def check_key(self) -> None:
        """Raise unless the key may write, without creating any input.

        Posts an empty bulk. A bad key gets 401 and a read key an empty 200 (both raise
        `EmoncmsAuthError`); a write key gets through to the input module, which answers that
        there is no data (`{"success": false, ...}`) or, on emoncms.org's fast path, `ok`.
        """
        reply = await self._post_bulk_data("[]")
        try:
            self._check_reply(*reply)
        except EmoncmsRejectedError:
            return  # the input module read the request: only a write key gets that far

    async def _post_bulk_data(self, data: str) -> tuple[int, str]:
        """Post the data field to input/bulk; return the status and body of the answer."""
        try:
            async with self._session.post(
                f"{self._url}/input/bulk",
                params={"time": "0"},
                data={"data": data},
                headers={
                    "Authorization": f"Bearer {self._write_key}",
                    "User-Agent": self._user_agent,
                },
                timeout=self._timeout,
                # A redirect would turn the POST into a GET and may lead to another host.
                allow_redirects=False,
            ) as response:
                body = await response.text(errors="replace")
                if 300 <= response.status < 400:
                    body = f"redirected to {response.headers.get('Location', '?')}"
                return response.status, body
        except TimeoutError as err:
            raise EmoncmsConnectionError(f"no answer within {self._timeout.total:g} s") from err
        except aiohttp.ClientError as err:
            raise EmoncmsConnectionError(f"cannot reach {self._url}: {err}") from err

    def _check_reply(self, status: int, text: str) -> None:
        """Return if the answer means success, else raise the matching `EmoncmsError`."""
        # The server's words go into exceptions and logs; make sure no echo can carry the key.
        body = " ".join(text.replace(self._write_key, "***").split())
        if status == 401:
            raise EmoncmsAuthError(f"Emoncms refused the API key: {body or 'HTTP 401'}")
        if status != 200:
            raise EmoncmsConnectionError(f"HTTP {status}: {body[:_EXCERPT_LENGTH]}")
        if not body:
            # Emoncms checks the session's write permission before running the input module.
            # A read key authenticates (so no 401) but fails that check, and the request ends
            # with no output at all: an empty 200 means the key can read but not write.
            raise EmoncmsAuthError("the API key can read but not write: use the write API key")
        if body == "ok":
            return
        try:
            reply = json.loads(body)
        except ValueError:
            reply = None
        if isinstance(reply, dict) and "success" in reply:
            if reply["success"] is True:
                return
            raise EmoncmsRejectedError(str(reply.get("message", "")))
        # Not an answer of the input module (e.g. a captive portal's page): not a verdict on
        # the data, which must not be dropped as poison for it.
        raise EmoncmsConnectionError(f"not an Emoncms answer: {body[:_EXCERPT_LENGTH]}")


class ExportState(StrEnum):
    """What the sender is doing."""

    SENDING = "sending"  # delivering whenever samples are queued
    OUTAGE = "outage"  # Emoncms cannot be reached: retrying with backoff
    PAUSED_AUTH = "paused_auth"  # Emoncms refused the key: waiting for a new one


@dataclass(frozen=True, slots=True)
class DrainResult:
    """What one drain did."""

    sent: int  # samples Emoncms confirmed
    rejected: int  # samples Emoncms refused as malformed: dropped
    remaining: int  # samples still queued


@dataclass(frozen=True, slots=True)
class ExportStatus:
    """The sender's state, for diagnostics. Times are those of the sender's clock."""

    state: ExportState
    queued: int
    dropped: int  # samples dropped because the queue was full
    rejected: int  # samples dropped because Emoncms refused them, since the sender started
    last_success: float | None
    last_error: str | None  # never contains the key
    outage_start: float | None
    next_attempt: float | None  # when the next retry is due during an outage


def retry_delay(failures: int, random_value: float) -> float:
    """Return the wait after `failures` consecutive failures (random_value in [0, 1))."""
    base = min(RETRY_FIRST * 2.0 ** min(failures - 1, 16), RETRY_MAX)
    return base * (1 + RETRY_JITTER * (2 * random_value - 1))


@dataclass(slots=True)
class _Progress:
    """What the current drain has done so far."""

    sent: int = 0
    rejected: int = 0


class EmoncmsSender:
    """Delivers an `ExportQueue` to Emoncms: oldest first, every sample once, none lost.

    - `drain()` sends everything queued if a send is due; call it after recording samples, once
      per export interval. Posts go one at a time, oldest first: in steady state one post per
      interval, after an outage the backlog in consecutive posts. Concurrent drains queue up.
    - A batch Emoncms refuses (`EmoncmsRejectedError`) is split in halves, recursively, until the
      refused samples stand alone; those are dropped and logged, the rest is delivered in order.
      A bulk post is not atomic: rows before a refused row are stored, those after it are not.
      Splitting therefore sends again the rows that preceded a refused one in a refused post
      (once more per halving that keeps them with it). They carry the same time and value,
      which Emoncms writes into the same feed slot (emoncms.org ignores data older than what it
      holds): each sample still ends up stored once. Rows after a refused one were not stored
      and are sent once. The same reasoning covers a post that timed out after being stored.
    - On `EmoncmsConnectionError` the sender backs off (5 s doubling to 5 min, ±20 %); one log
      line marks the start of an outage and one its end, with its length and how many samples
      were delivered once it ended.
    - On `EmoncmsAuthError` the sender pauses until `resume()` gives it a new key.

    `clock` returns unix seconds and `random` a number in [0, 1): both are injected so that the
    policy is deterministic under test.
    """

    def __init__(
        self,
        client: EmoncmsClient,
        queue: ExportQueue,
        *,
        clock: Callable[[], float],
        random: Callable[[], float],
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self._client = client
        self._queue = queue
        self._clock = clock
        self._random = random
        self._batch_size = batch_size
        self._lock = asyncio.Lock()
        self._paused = False
        self._outage_start: float | None = None
        self._failures = 0
        self._next_attempt: float | None = None
        self._recovered_after: float | None = None  # outage length, until it has been logged
        self._last_success: float | None = None
        self._last_error: str | None = None
        self._rejected = 0

    @property
    def status(self) -> ExportStatus:
        """Return the sender's state for diagnostics."""
        if self._paused:
            state = ExportState.PAUSED_AUTH
        elif self._outage_start is not None:
            state = ExportState.OUTAGE
        else:
            state = ExportState.SENDING
        return ExportStatus(
            state=state,
            queued=len(self._queue),
            dropped=self._queue.dropped,
            rejected=self._rejected,
            last_success=self._last_success,
            last_error=self._last_error,
            outage_start=self._outage_start,
            next_attempt=self._next_attempt,
        )

    def record(self, time: int, node: str, values: Mapping[str, object]) -> None:
        """Queue the values of a node measured at `time` (unix seconds).

        Names are cleaned and unsendable values (None, NaN, ...) left out now, so the queue
        holds only what Emoncms may receive; nothing is queued when no value is left.
        """
        if sendable := sendable_values(values):
            self._queue.append(Sample(time, clean_node_name(node), sendable))

    async def drain(self) -> DrainResult:
        """Send every queued sample, unless paused or waiting for the next retry."""
        return await self._send(force=False)

    async def flush(self) -> DrainResult:
        """Send every queued sample now, even before the next retry is due (not when paused)."""
        return await self._send(force=True)

    def resume(self, write_key: str) -> None:
        """Send with a new write API key, ending a pause for a refused key."""
        self._client.replace_key(write_key)
        if self._paused:
            self._paused = False
            _LOGGER.info("Emoncms export resumed with a new write API key")

    async def _send(self, *, force: bool) -> DrainResult:
        """Send every queued sample if allowed; handle the outcome."""
        async with self._lock:
            progress = _Progress()
            if not self._paused and (
                force or self._next_attempt is None or self._clock() >= self._next_attempt
            ):
                try:
                    while self._queue:
                        position = self._queue.position
                        await self._deliver(self._queue.peek(self._batch_size), position, progress)
                except EmoncmsConnectionError as err:
                    self._log_recovery(progress)
                    self._fail(err)
                except EmoncmsAuthError as err:
                    self._log_recovery(progress)
                    self._pause(err)
                else:
                    self._log_recovery(progress)
            if progress.sent or progress.rejected:
                _LOGGER.debug(
                    "Emoncms drain: %d samples sent, %d rejected, %d queued",
                    progress.sent,
                    progress.rejected,
                    len(self._queue),
                )
            return DrainResult(progress.sent, progress.rejected, len(self._queue))

    async def _deliver(self, rows: list[Sample], position: int, progress: _Progress) -> None:
        """Deliver rows (the first at `position`), isolating the ones Emoncms refuses."""
        try:
            await self._post(rows)
        except EmoncmsRejectedError as err:
            if len(rows) > 1:
                middle = len(rows) // 2
                await self._deliver(rows[:middle], position, progress)
                await self._deliver(rows[middle:], position + middle, progress)
                return
            self._reject(rows[0], err)
            progress.rejected += 1
        else:
            progress.sent += len(rows)
            self._last_success = self._clock()
        self._queue.acknowledge(position + len(rows))

    async def _post(self, rows: list[Sample]) -> None:
        """Post rows; any answer of the server ends an outage."""
        try:
            await self._client.post_samples(rows)
        except (EmoncmsAuthError, EmoncmsRejectedError):
            self._answered()
            raise
        self._answered()

    def _answered(self) -> None:
        """Note that the server answered: an outage, if any, is over."""
        if self._outage_start is not None:
            self._recovered_after = self._clock() - self._outage_start
            self._outage_start = None
            self._failures = 0
            self._next_attempt = None

    def _log_recovery(self, progress: _Progress) -> None:
        """Log the end of an outage that ended during this drain."""
        if self._recovered_after is not None:
            _LOGGER.info(
                "Emoncms is reachable again after %s; samples delivered: %d",
                timedelta(seconds=round(self._recovered_after)),
                progress.sent,
            )
            self._recovered_after = None

    def _fail(self, err: EmoncmsConnectionError) -> None:
        """Back off after a failed attempt; log the start of an outage."""
        now = self._clock()
        self._last_error = str(err)
        self._failures += 1
        self._next_attempt = now + retry_delay(self._failures, self._random())
        if self._outage_start is None:
            self._outage_start = now
            _LOGGER.warning(
                "Emoncms cannot be reached (%s); retrying with backoff (queued samples: %d)",
                err,
                len(self._queue),
            )

    def _pause(self, err: EmoncmsAuthError) -> None:
        """Stop sending until a new key is given."""
        self._paused = True
        self._last_error = str(err)
        _LOGGER.warning(
            "Emoncms refused the API key (%s); export paused until a new write key is entered "
            "(queued samples: %d)",
            err,
            len(self._queue),
        )

    def _reject(self, sample: Sample, err: EmoncmsRejectedError) -> None:
        """Drop a sample Emoncms refused, saying which one."""
        measured = datetime.fromtimestamp(sample.time, UTC).isoformat()
        self._rejected += 1
        self._last_error = f"rejected the sample of node {sample.node!r} at {measured}: {err}"
        _LOGGER.warning(
            "Emoncms rejected the sample of node %r measured at %s (%s); dropped it",
            sample.node,
            measured,
            err,
        )
