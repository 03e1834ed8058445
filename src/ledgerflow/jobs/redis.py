"""``redis://``: a board in Redis 7 through redis-py (``pip install ledgerflow[redis]``).

Each job is a hash; three sorted sets index it by what may happen next: ``ready``
(score: minus the priority; equal scores sort by member, ``seq:uuid``, so by posting
order), ``delayed`` (score: when it becomes available) and ``claimed`` (score: when
the claim lapses).  Every change is one Lua script, so a claim or a completion is
atomic in Redis.  Redis may lose a write on failover, so it is never trusted with
the fence: the flow's owner and fence in the logbook store decide who may write, and
a conductor marks a job DONE only from the flow state persisted there.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Final

from ledgerflow.errors import StorageError
from ledgerflow.jobs.board import Idle, JobBoard, Later
from ledgerflow.jobs.model import CLAIMED, READY, Job
from ledgerflow.models import LogBook
from ledgerflow.persistence.base import Backend

__all__ = ["RedisBoard"]

_PREFIX: Final = "ledgerflow:jobs:"
_INT_FIELDS: Final = ("priority", "attempts", "max_attempts")
_OPTIONAL: Final = ("key", "owner", "last_error")
_TIME_FIELDS: Final = ("created_at", "available_at")
#: Where each time a board change sets is kept, as seconds since the epoch.
_EPOCH_FIELDS: Final = {"claim_expires_at": "claim_epoch", "available_at": "available_epoch"}

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

# ARGV: prefix, uuid, key ('' for none), delay (s), field, value, ...
_POST: Final = (
    _PLACE
    + """
local p, uuid, key, now = ARGV[1], ARGV[2], ARGV[3], clock()
if key ~= '' then
  local held = redis.call('GET', p .. 'key:' .. key)
  if held then return held end
end
local seq = redis.call('INCR', p .. 'seq')
local job = p .. 'job:' .. uuid
for i = 5, #ARGV, 2 do redis.call('HSET', job, ARGV[i], ARGV[i + 1]) end
redis.call('HSET', job, 'seq', seq, 'member', string.format('%020d', seq) .. ':' .. uuid,
           'available_epoch', epoch(now + tonumber(ARGV[4])))
redis.call('ZADD', p .. 'all', seq, uuid)
place(p, uuid, now)
redis.call('LPUSH', p .. 'wake', '1')
redis.call('LTRIM', p .. 'wake', 0, 999)
return uuid
"""
)

# ARGV: prefix, owner, lease (s)
_CLAIM: Final = (
    _PLACE
    + """
local p, owner, now = ARGV[1], ARGV[2], clock()
local expires = epoch(now + tonumber(ARGV[3]))
due(p, now)
local first = redis.call('ZRANGE', p .. 'ready', 0, 0)
if #first == 0 then return false end
local uuid = string.sub(first[1], 22)
local job = p .. 'job:' .. uuid
redis.call('HINCRBY', job, 'attempts', 1)
redis.call('HSET', job, 'state', 'CLAIMED', 'owner', owner, 'claim_epoch', expires)
place(p, uuid, now)
return redis.call('HGETALL', job)
"""
)

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
for i = 6, #ARGV, 2 do
  local field, value = ARGV[i], ARGV[i + 1]
  if string.sub(value, 1, 1) == '@' then value = epoch(now + tonumber(string.sub(value, 2))) end
  if value == '\\0' then redis.call('HDEL', job, field)
  elseif field == 'attempts' and value == '-1' then redis.call('HINCRBY', job, 'attempts', -1)
  else redis.call('HSET', job, field, value) end
end
local key = redis.call('HGET', job, 'key')
local new = redis.call('HGET', job, 'state')
if key and (new == 'READY' or new == 'CLAIMED') and state ~= 'READY' and state ~= 'CLAIMED' then
  local held = redis.call('GET', p .. 'key:' .. key)
  if held and held ~= uuid then return -1 end
end
place(p, uuid, now)
if notify == '1' then
  redis.call('LPUSH', p .. 'wake', '1')
  redis.call('LTRIM', p .. 'wake', 0, 999)
end
return 1
"""
)


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
        self._client = redis.Redis.from_url(uri, decode_responses=True, socket_timeout=10)
        self._prefix = _PREFIX
        self._post_script = self._client.register_script(_POST)
        self._claim_script = self._client.register_script(_CLAIM)
        self._change_script = self._client.register_script(_CHANGE)
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
        stored = self._call("post a job", self._post_script, args=args)
        if stored != job.uuid:  # the key is held by an unfinished job: that one is the answer
            with self.backend.connect() as conn:
                conn.destroy_logbook(book.uuid)
            held = self._read(stored)
            assert held is not None
            return held
        return self._read(job.uuid) or job

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
        result = self._call("change a job", self._change_script, args=[*args, *fields])
        if result == -1:
            raise ValueError(
                f"job {job_uuid} cannot be READY again: another unfinished job holds its key"
            )
        return bool(result == 1)

    # ---- conductor side ---------------------------------------------------------------
    def claim(self, owner: str, lease: float) -> Job | None:
        """Claim the best job available now (priority, then age): READY, or a lapsed claim."""
        args = [self._prefix, owner, repr(float(lease))]
        pairs = self._call("claim a job", self._claim_script, args=args)
        if not pairs:
            return None
        return self._job(dict(zip(pairs[::2], pairs[1::2], strict=True)))

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
        self._client.close()
