"""``redis://``: a board in Redis 7 through redis-py (``pip install ledgerflow[redis]``).

Each job is a hash; three sorted sets index it by what may happen next: ``ready``
(score: minus the priority; equal scores sort by member, ``seq:uuid``, so by posting
order), ``delayed`` (score: when it becomes available) and ``claimed`` (score: when
the claim lapses).  Every change is one Lua script, so a claim or a completion is
atomic in Redis.  Redis may lose a write on failover, so it is never trusted with
the fence: the flow's owner and fence in the logbook store decide who may write, and
a conductor marks a job DONE only from the flow state persisted there.

The conductor's hot path is one script call each for post, claim and complete, sent on
a connection pinned to the calling thread (redis-py's pool and per-command layers cost
more client time than the script itself), and each script returns what the caller
needs, so no read follows a write.  A member in ``ready`` is in no other index set (every
script keeps it so), which lets a claim pop it and a completion drop it without
looking where it is.
"""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import UTC, datetime
from typing import Any, Final

from ledgerflow.errors import StorageError
from ledgerflow.jobs.board import Idle, JobBoard, Later, key_held
from ledgerflow.jobs.model import CLAIMED, ENDED, JOB_FIELDS, READY, Job
from ledgerflow.models import LogBook
from ledgerflow.persistence.base import Backend

__all__ = ["RedisBoard"]

_PREFIX: Final = "ledgerflow:jobs:"
_INT_FIELDS: Final = ("priority", "attempts", "max_attempts")
_OPTIONAL: Final = ("key", "owner", "last_error")
_TIME_FIELDS: Final = ("created_at", "available_at")
#: Where each time a board change sets is kept, as seconds since the epoch.
_EPOCH_FIELDS: Final = {"claim_expires_at": "claim_epoch", "available_at": "available_epoch"}
#: What scripts return of a job (HMGET, in this order): a ``Job``'s fields, then the
#: available time on the server's clock.
_JOB_FIELDS: Final = (*JOB_FIELDS, "available_epoch")
_HMGET_JOB: Final = "redis.call('HMGET', job, " + ", ".join(f"'{f}'" for f in _JOB_FIELDS) + ")"

# Shared Lua: the server's clock (claims never depend on a client's), and moving a
# job's member between the index sets for its (new) state.
_PLACE: Final = """
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function epoch(seconds)
  return string.format('%.6f', seconds)
end
local function place(p, uuid, now)
  local job = p .. 'job:' .. uuid
  local member = redis.call('HGET', job, 'member')
  redis.call('ZREM', p .. 'ready', member)
  redis.call('ZREM', p .. 'delayed', member)
  redis.call('ZREM', p .. 'claimed', uuid)
  local state = redis.call('HGET', job, 'state')
  local key = redis.call('HGET', job, 'key')
  if state == 'READY' then
    local at = tonumber(redis.call('HGET', job, 'available_epoch'))
    if at <= now then
      redis.call('ZADD', p .. 'ready', redis.call('HGET', job, 'score'), member)
    else
      redis.call('ZADD', p .. 'delayed', at, member)
    end
  elseif state == 'CLAIMED' then
    redis.call('ZADD', p .. 'claimed', redis.call('HGET', job, 'claim_epoch'), uuid)
  end
  if key then
    local holder = p .. 'key:' .. key
    if state == 'READY' or state == 'CLAIMED' then
      redis.call('SET', holder, uuid)
    elseif redis.call('GET', holder) == uuid then
      redis.call('DEL', holder)
    end
  end
end
local function due(p, now)
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', p .. 'delayed', '-inf', now)) do
    local uuid = string.sub(member, 22)
    redis.call('ZREM', p .. 'delayed', member)
    redis.call('ZADD', p .. 'ready', redis.call('HGET', p .. 'job:' .. uuid, 'score'), member)
  end
  for _, uuid in ipairs(redis.call('ZRANGEBYSCORE', p .. 'claimed', '-inf', now)) do
    local job = p .. 'job:' .. uuid
    local attempts = tonumber(redis.call('HGET', job, 'attempts'))
    if attempts < tonumber(redis.call('HGET', job, 'max_attempts')) then
      redis.call('ZREM', p .. 'claimed', uuid)
      redis.call('ZADD', p .. 'ready', redis.call('HGET', job, 'score'),
                 redis.call('HGET', job, 'member'))
    end
  end
end
"""

# ARGV: prefix, uuid, key ('' for none), delay (s), field, value, ...  Returns the new
# job's _JOB_FIELDS, or those of the unfinished job that holds the key.
_POST: Final = (
    _PLACE
    + """
local p, uuid, key, now = ARGV[1], ARGV[2], ARGV[3], clock()
local held = key ~= '' and redis.call('GET', p .. 'key:' .. key)
if held then uuid = held else
  local seq = redis.call('INCR', p .. 'seq')
  local job = p .. 'job:' .. uuid
  redis.call('HSET', job, unpack(ARGV, 5))
  redis.call('HSET', job, 'seq', seq, 'member', string.format('%020d', seq) .. ':' .. uuid,
             'available_epoch', epoch(now + tonumber(ARGV[4])))
  redis.call('ZADD', p .. 'all', seq, uuid)
  place(p, uuid, now)
  redis.call('LPUSH', p .. 'wake', '1')
  redis.call('LTRIM', p .. 'wake', 0, 999)
end
local job = p .. 'job:' .. uuid
return """
    + _HMGET_JOB
)

# ARGV: prefix, owner, lease (s).  The best ready member is popped: it is in no other
# index set, so claiming it moves nothing else.  Returns the job's _JOB_FIELDS.
_CLAIM: Final = (
    _PLACE
    + """
local p, owner, now = ARGV[1], ARGV[2], clock()
due(p, now)
local first = redis.call('ZPOPMIN', p .. 'ready')
if #first == 0 then return false end
local uuid = string.sub(first[1], 22)
local job = p .. 'job:' .. uuid
local expires = epoch(now + tonumber(ARGV[3]))
redis.call('HINCRBY', job, 'attempts', 1)
redis.call('HSET', job, 'state', 'CLAIMED', 'owner', owner, 'claim_epoch', expires)
redis.call('ZADD', p .. 'claimed', expires, uuid)
local values = """
    + _HMGET_JOB
    + """
if values[7] then redis.call('SET', p .. 'key:' .. values[7], uuid) end
return values
"""
)

# ARGV: prefix, uuid, owner, state (DONE, FAILED or CANCELLED), last_error ('\\0': none).
# Fenced like every change: only the claim's owner ends it.  A claim is in ``claimed``,
# or in ``ready`` if it lapsed and a claim script put it back in line.
_COMPLETE: Final = """
local p, uuid, owner, state, error = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local job = p .. 'job:' .. uuid
local seen = redis.call('HMGET', job, 'state', 'owner', 'key', 'member')
if seen[1] ~= 'CLAIMED' or seen[2] ~= owner then return 0 end
if error == '\\0' then
  redis.call('HDEL', job, 'owner', 'last_error')
  redis.call('HSET', job, 'state', state)
else
  redis.call('HDEL', job, 'owner')
  redis.call('HSET', job, 'state', state, 'last_error', error)
end
redis.call('ZREM', p .. 'claimed', uuid)
redis.call('ZREM', p .. 'ready', seen[4])
if seen[3] then
  local holder = p .. 'key:' .. seen[3]
  if redis.call('GET', holder) == uuid then redis.call('DEL', holder) end
end
return 1
"""

# ARGV: prefix, uuid, owner ('' = anyone), states (comma separated), notify, then
#       field/value pairs (value '\\0' deletes the field; attempts '-1' decrements;
#       '@S' is S seconds after now on the server's clock).
_CHANGE: Final = (
    _PLACE
    + """
local p, uuid, owner, allowed, notify, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5],
  clock()
local job = p .. 'job:' .. uuid
local state = redis.call('HGET', job, 'state')
if not state or not string.find(',' .. allowed .. ',', ',' .. state .. ',', 1, true) then
  return 0
end
if owner ~= '' and redis.call('HGET', job, 'owner') ~= owner then return 0 end
local key = redis.call('HGET', job, 'key')
if key and state ~= 'READY' and state ~= 'CLAIMED' then  -- refused before any write
  for i = 6, #ARGV, 2 do
    if ARGV[i] == 'state' and (ARGV[i + 1] == 'READY' or ARGV[i + 1] == 'CLAIMED') then
      local held = redis.call('GET', p .. 'key:' .. key)
      if held and held ~= uuid then return -1 end
    end
  end
end
for i = 6, #ARGV, 2 do
  local field, value = ARGV[i], ARGV[i + 1]
  if string.sub(value, 1, 1) == '@' then value = epoch(now + tonumber(string.sub(value, 2))) end
  if value == '\\0' then redis.call('HDEL', job, field)
  elseif field == 'attempts' and value == '-1' then redis.call('HINCRBY', job, 'attempts', -1)
  else redis.call('HSET', job, field, value) end
end
place(p, uuid, now)
if notify == '1' then
  redis.call('LPUSH', p .. 'wake', '1')
  redis.call('LTRIM', p .. 'wake', 0, 999)
end
return 1
"""
)


class _Script:
    """A Lua script's text and SHA1 (what EVALSHA names it by)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


def _score(priority: int) -> float:
    """Minus the priority as a double (exact up to 2**53; beyond, clamped)."""
    return float(-max(-(10**300), min(10**300, priority)))


def _encode(name: str, value: Any) -> str:
    if value is None:
        return "\0"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


class RedisBoard(JobBoard):
    """Jobs in Redis, logbooks (and the authoritative fence) in ``backend``."""

    schemes = ("redis",)

    def __init__(self, uri: str, backend: Backend, *, owns_backend: bool) -> None:
        super().__init__(backend, owns_backend=owns_backend)
        try:
            import redis
        except ImportError as error:
            from ledgerflow.errors import MissingDriverError

            raise MissingDriverError(
                "a Redis board needs redis-py: pip install 'ledgerflow[redis]'"
            ) from error
        self._redis_errors: tuple[type[BaseException], ...] = (redis.RedisError,)
        self._stale_errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._no_script: type[BaseException] = redis.exceptions.NoScriptError
        self._client = redis.Redis.from_url(uri, decode_responses=True, socket_timeout=10)
        self._prefix = _PREFIX
        self._post_script = _Script(_POST)
        self._claim_script = _Script(_CLAIM)
        self._complete_script = _Script(_COMPLETE)
        self._change_script = _Script(_CHANGE)
        self._local = threading.local()
        self._pinned: list[tuple[threading.Thread, Any]] = []
        self._pinned_lock = threading.Lock()
        self._where = uri.split("@")[-1]
        try:
            self._client.ping()
        except self._redis_errors as error:
            raise StorageError(f"cannot reach Redis at {self._where}: {error}") from error

    def _call(self, action: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except self._redis_errors as error:
            raise StorageError(f"{action} failed on Redis at {self._where}: {error}") from error

    def _run(self, action: str, script: _Script, args: list[str]) -> Any:
        """Run ``script`` on this thread's pinned connection, retried as redis-py retries."""
        conn = self._connection()

        def send() -> Any:
            try:
                conn.send_command("EVALSHA", script.sha, 0, *args)
                return conn.read_response()
            except self._no_script:  # a restarted or flushed server: nothing ran, send it whole
                conn.send_command("EVAL", script.source, 0, *args)
                return conn.read_response()

        try:
            return conn.retry.call_with_retry(send, lambda _error: conn.disconnect())
        except self._redis_errors as error:
            conn.disconnect()  # a reply may still be on its way: never read it as the next one
            raise StorageError(f"{action} failed on Redis at {self._where}: {error}") from error

    def _connection(self) -> Any:
        """This thread's connection, taken from the client's pool once and kept.

        Those of threads that ended go back to the pool when another thread takes one,
        so posts from short-lived threads (one per request) do not pile connections up.

        Checked as the pool checks a connection it hands out (a poll, no round trip):
        one with something to read before anything was sent was closed by the server
        while idle (a restart, a killed client) or is out of step, and starts afresh.
        """
        conn = getattr(self._local, "conn", None)
        if conn is None:
            pool = self._client.connection_pool
            with self._pinned_lock:
                for thread, ended in self._pinned:
                    if not thread.is_alive():
                        pool.release(ended)
                self._pinned = [(t, c) for t, c in self._pinned if t.is_alive()]
                conn = self._local.conn = pool.get_connection()
                self._pinned.append((threading.current_thread(), conn))
            return conn
        try:
            stale = conn.can_read()
        except self._stale_errors:
            stale = True
        if stale:
            conn.disconnect()  # the next command connects again
        return conn

    def _job_of(self, values: list[str | None]) -> Job:
        """The job of a script's reply (its _JOB_FIELDS in order)."""
        return self._job({n: v for n, v in zip(_JOB_FIELDS, values, strict=True) if v is not None})

    def _job(self, data: dict[str, str]) -> Job:
        values: dict[str, Any] = {}
        for name in ("uuid", "name", "state", "book_uuid", "flow_uuid"):
            values[name] = data[name]
        for name in _INT_FIELDS:
            values[name] = int(data[name])
        for name in _OPTIONAL:
            values[name] = data.get(name)
        for name in _TIME_FIELDS:
            parsed = datetime.fromisoformat(data[name])
            values[name] = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        if "available_epoch" in data:  # set on the server's clock (see _POST, _CHANGE)
            values["available_at"] = datetime.fromtimestamp(float(data["available_epoch"]), UTC)
        return Job(**values)

    def _read(self, job_uuid: str) -> Job | None:
        data = self._call("read a job", self._client.hgetall, f"{self._prefix}job:{job_uuid}")
        return self._job(data) if data else None

    # ---- user side --------------------------------------------------------------------
    def _post(self, book: LogBook, job: Job) -> Job:
        with self.backend.connect() as conn:
            conn.save_logbook(book)
        fields: list[str] = []
        for name, value in job.to_dict().items():
            if value is not None:
                fields += [name, str(value)]
        fields += ["score", repr(_score(job.priority))]
        delay = (job.available_at - job.created_at).total_seconds()
        args = [self._prefix, job.uuid, job.key or "", repr(delay), *fields]
        stored = self._job_of(self._run("post a job", self._post_script, args))
        if stored.uuid != job.uuid:  # the key is held by an unfinished job: that one it is
            with self.backend.connect() as conn:
                conn.destroy_logbook(book.uuid)
        return stored

    def _find_key(self, key: str) -> Job | None:
        held = self._call("find a job by key", self._client.get, f"{self._prefix}key:{key}")
        return None if held is None else self._read(held)

    def _get(self, job_uuid: str) -> Job | None:
        return self._read(job_uuid)

    def _list(self, state: str | None, limit: int | None) -> list[Job]:
        uuids = self._call("list jobs", self._client.zrevrange, f"{self._prefix}all", 0, -1)
        found: list[Job] = []
        for start in range(0, len(uuids), 500):
            pipe = self._client.pipeline(transaction=False)
            for uuid in uuids[start : start + 500]:
                pipe.hgetall(f"{self._prefix}job:{uuid}")
            for data in self._call("list jobs", pipe.execute):
                if data and state in (None, data["state"]):
                    found.append(self._job(data))
            if limit is not None and len(found) >= limit:
                return found[:limit]
        return found

    def _change(
        self,
        job_uuid: str,
        from_states: tuple[str, ...],
        owner: str | None,
        changes: dict[str, Any],
    ) -> bool:
        fields: list[str] = []
        for name, value in changes.items():
            if isinstance(value, Later):  # a time on the server's clock, set in the script
                fields += [_EPOCH_FIELDS[name], f"@{value.seconds!r}"]
            elif name == "attempts" and value == -1:
                fields += ["attempts", "-1"]
            else:
                fields += [name, _encode(name, value)]
        notify = "1" if changes.get("state") == READY else "0"
        args = [self._prefix, job_uuid, owner or "", ",".join(from_states), notify]
        result = self._run("change a job", self._change_script, [*args, *fields])
        if result == -1:
            raise ValueError(key_held(job_uuid))
        return bool(result == 1)

    # ---- conductor side ---------------------------------------------------------------
    def claim(self, owner: str, lease: float) -> Job | None:
        """Claim the best job available now (priority, then age): READY, or a lapsed claim."""
        args = [self._prefix, owner, repr(float(lease))]
        values = self._run("claim a job", self._claim_script, args)
        return self._job_of(values) if values else None

    def complete(self, job_uuid: str, owner: str, state: str, last_error: str | None) -> bool:
        """End ``owner``'s claim DONE, FAILED or CANCELLED; False if it is not theirs."""
        if state not in ENDED:
            raise ValueError(f"a job ends DONE, FAILED or CANCELLED, not {state!r}")
        error = "\0" if last_error is None else last_error
        args = [self._prefix, job_uuid, owner, state, error]
        return bool(self._run("complete a job", self._complete_script, args) == 1)

    def _lapsed_at_max(self) -> list[tuple[str, str, int]]:
        uuids = self._call(
            "find lapsed claims",
            self._client.zrangebyscore,
            f"{self._prefix}claimed",
            "-inf",
            self._server_time(),
        )
        found = []
        for uuid in uuids:
            job = self._read(uuid)
            if job is not None and job.state == CLAIMED and job.attempts >= job.max_attempts:
                found.append((uuid, job.owner or "", job.attempts))
        return found

    def idle(self) -> Idle:
        """What is left to claim, now or later."""
        p = self._prefix
        pipe = self._client.pipeline(transaction=False)
        pipe.time()
        pipe.zcard(f"{p}ready")
        pipe.zrange(f"{p}delayed", 0, 0, withscores=True)
        pipe.zcard(f"{p}delayed")
        pipe.zrange(f"{p}claimed", 0, -1, withscores=True)
        now_pair, ready, first_delayed, delayed, scored = self._call("look for work", pipe.execute)
        now = now_pair[0] + now_pair[1] / 1_000_000
        lapsed = [uuid for uuid, until in scored if until <= now]
        claimed = [uuid for uuid, _ in scored]
        next_at = None
        if ready:
            next_at = datetime.now(UTC)
        elif first_delayed:
            next_at = datetime.fromtimestamp(first_delayed[0][1], UTC)
        owners = []
        for uuid in claimed:
            job = self._read(uuid)
            if job is not None and job.state == CLAIMED:
                owners.append((uuid, job.owner or ""))
        # Lapsed claims moved back into ``ready`` by a claim script are still CLAIMED.
        return Idle(int(ready) + int(delayed), len(lapsed), next_at, tuple(owners))

    def _server_time(self) -> float:
        seconds, micros = self._call("read the server's clock", self._client.time)
        return float(seconds + micros / 1_000_000)

    def wait_for_work(self, timeout: float) -> None:
        """Sleep up to ``timeout`` s; a post or hand-back wakes one waiting conductor."""
        if timeout <= 0:
            return
        try:
            self._client.blpop([f"{self._prefix}wake"], timeout=max(0.01, timeout))
        except self._redis_errors:
            time.sleep(timeout)

    def clear_all(self) -> None:
        """Delete every job of this board (its logbooks stay)."""
        keys = list(self._client.scan_iter(f"{self._prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            self._client.delete(*keys[start : start + 500])

    def _close(self) -> None:
        with self._pinned_lock:
            pinned, self._pinned = self._pinned, []
        for _, conn in pinned:
            conn.disconnect()
        self._client.close()
