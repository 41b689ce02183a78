"""Checkpointers for agent runs: LangGraph's savers with our state types allowed.

LangGraph's serializer restores only the types it is told about; these are the types the
agent loop keeps in its state. Pass `serializer()` to any saver you build yourself.

A run saves a checkpoint after every step and waits for it (LangGraph's `"sync"`
durability), through `CheckedSaver`: a write the saver refuses raises
`CheckpointWriteError` at that step, so a run never goes on unsaved (LangGraph alone
would only report a failed background write when the run ends, and not at all when
the run fails otherwise).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import ormsgpack
from harmonygraph.concurrency import run_sync
from harmonygraph.harmony.messages import Message, Role
from harmonygraph.models.base import Usage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import (
    EXT_CONSTRUCTOR_KW_ARGS,
    JsonPlusSerializer,
    _msgpack_default,
    _option,
)

__all__ = [
    "STATE_TYPES",
    "CheckedSaver",
    "CheckpointWriteError",
    "SaverContext",
    "StateSerializer",
    "memory_saver",
    "postgres_saver",
    "serializer",
    "sqlite_saver",
]

STATE_TYPES: list[tuple[str, str]] = [
    ("harmonygraph.harmony.messages", "Message"),
    ("harmonygraph.harmony.messages", "Role"),
    ("harmonygraph.models.base", "Usage"),
]


class StateSerializer(JsonPlusSerializer):
    """LangGraph's msgpack serializer with the loop's own types encoded first.

    The bytes are exactly what `JsonPlusSerializer` writes for them (a constructor
    extension with module, class and fields), so checkpoints stay readable by any
    `JsonPlusSerializer` that allows `STATE_TYPES`, older harmonygraph versions included.
    What it saves is the generic path: LangGraph checks every dataclass against its
    `Send` protocol (`isinstance` with a runtime protocol, `typing._get_protocol_attrs`)
    before encoding it, which was most of a checkpoint's cost.
    """

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        if obj is None or isinstance(obj, bytes | bytearray):
            return super().dumps_typed(obj)
        try:
            return "msgpack", ormsgpack.packb(obj, default=_default, option=_option)
        except ormsgpack.MsgpackEncodeError:
            return super().dumps_typed(obj)


# Every field, in declaration order, as LangGraph's generic dataclass encoding has them.
_MESSAGE_FIELDS = tuple(f.name for f in dataclasses.fields(Message))
_USAGE_FIELDS = tuple(f.name for f in dataclasses.fields(Usage))
_MESSAGE_MODULE = "harmonygraph.harmony.messages"
_USAGE_MODULE = "harmonygraph.models.base"


def _default(obj: Any) -> Any:
    kind = type(obj)
    if kind is Message:
        return ormsgpack.Ext(
            EXT_CONSTRUCTOR_KW_ARGS,
            ormsgpack.packb(
                (_MESSAGE_MODULE, "Message", {f: getattr(obj, f) for f in _MESSAGE_FIELDS}),
                default=_default,
                option=_option,
            ),
        )
    if kind is Role:
        return _ROLES[obj]
    if kind is Usage:
        return ormsgpack.Ext(
            EXT_CONSTRUCTOR_KW_ARGS,
            ormsgpack.packb(
                (_USAGE_MODULE, "Usage", {f: getattr(obj, f) for f in _USAGE_FIELDS}),
                default=_default,
                option=_option,
            ),
        )
    return _msgpack_default(obj)


# A role's encoding never changes: made once, by LangGraph's own encoder.
_ROLES = {role: _msgpack_default(role) for role in Role}


def serializer() -> JsonPlusSerializer:
    return StateSerializer(allowed_msgpack_modules=STATE_TYPES)


def memory_saver() -> InMemorySaver:
    return InMemorySaver(serde=serializer())


class SaverContext:
    """A database saver for sync and async code alike: `with` or `async with`.

    `async with` opens the saver on the running event loop (for `await agent.arun`);
    `with` opens it on the loop that sync calls share (`harmonygraph.concurrency`), the
    one `agent.run`, `agent.stream` and `chat.send` run on, so sync code keeps threads in
    the database too. Close it the way it was opened.
    """

    def __init__(self, open_saver: Callable[[], AbstractAsyncContextManager[Any]]) -> None:
        self._open = open_saver
        self._cm: AbstractAsyncContextManager[Any] | None = None

    async def __aenter__(self) -> Any:
        if self._cm is not None:
            raise RuntimeError("this saver context is already open; make a new one per `with`")
        cm = self._open()
        saver = await cm.__aenter__()
        self._cm = cm
        return saver

    async def __aexit__(self, *exc: Any) -> None:
        cm, self._cm = self._cm, None
        if cm is not None:
            await cm.__aexit__(*exc)

    def __enter__(self) -> Any:
        return run_sync(self.__aenter__())

    def __exit__(self, *exc: Any) -> None:
        run_sync(self.__aexit__(*exc))


def sqlite_saver(path: str | Path) -> SaverContext:
    """A SQLite saver (extra `checkpoint`), for sync or async code:
    `with sqlite_saver(p) as saver` around `agent.run`, or `async with` around `agent.arun`."""
    return SaverContext(lambda: _sqlite(path))


@asynccontextmanager
async def _sqlite(path: str | Path) -> AsyncIterator[Any]:
    try:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    except ImportError:
        raise ImportError(
            "SQLite checkpoints need langgraph-checkpoint-sqlite: pip install 'harmonygraph[checkpoint]'"
        ) from None
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        saver.serde = serializer()
        yield saver


def postgres_saver(url: str) -> SaverContext:
    """A Postgres saver (extra `checkpoint`), for sync or async code:
    `with postgres_saver(url) as saver` or `async with postgres_saver(url) as saver`."""
    return SaverContext(lambda: _postgres(url))


@asynccontextmanager
async def _postgres(url: str) -> AsyncIterator[Any]:
    try:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    except ImportError:
        raise ImportError(
            "Postgres checkpoints need langgraph-checkpoint-postgres: pip install 'harmonygraph[checkpoint]'"
        ) from None
    async with AsyncPostgresSaver.from_conn_string(url) as saver:
        saver.serde = serializer()
        await saver.setup()
        yield saver


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written: the run stops here instead of going on unsaved."""

    def __init__(self, saver: object, what: str, cause: BaseException) -> None:
        self.saver_type = type(saver).__name__
        first = str(cause).strip().splitlines()[0][:300] if str(cause).strip() else ""
        super().__init__(
            f"{type(saver).__name__} could not save the run's {what} "
            f"({type(cause).__name__}: {first}); the run was stopped so that nothing runs "
            "unsaved. Check the database (reachable, writable, not full), then run the "
            "same thread_id again with no input to go on from the last saved step"
        )


def _thread(config: RunnableConfig) -> str:
    return str(config.get("configurable", {}).get("thread_id", ""))


class CheckedSaver(BaseCheckpointSaver[Any]):
    """A saver that passes everything to `inner` and turns a failed write into
    `CheckpointWriteError`. A failed write of a step's pending writes (which LangGraph
    makes in the background) is raised by the next checkpoint write at the latest."""

    def __init__(self, inner: BaseCheckpointSaver[Any]) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner
        # Failed pending writes by thread, raised by that thread's next checkpoint.
        self._failed: dict[str, CheckpointWriteError] = {}

    @property
    def config_specs(self) -> list[Any]:
        return list(self.inner.config_specs)

    def __getattr__(self, name: str) -> Any:  # a saver's own extras (conn, setup, ...)
        return getattr(self.inner, name)

    def _raise_pending(self, config: RunnableConfig) -> None:
        err = self._failed.pop(_thread(config), None)
        if err is not None:
            raise err

    def forget_failures(self, thread_id: str) -> None:
        """Drop a thread's recorded write failure (its run has ended and reported it)."""
        self._failed.pop(thread_id, None)

    def _fail(self, config: RunnableConfig, what: str, exc: BaseException) -> CheckpointWriteError:
        err = CheckpointWriteError(self.inner, what, exc)
        self._failed.setdefault(_thread(config), err)
        return err

    # -- writes: checked ------------------------------------------------------------
    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        self._raise_pending(config)
        try:
            return self.inner.put(config, checkpoint, metadata, new_versions)
        except Exception as exc:
            raise CheckpointWriteError(self.inner, "checkpoint", exc) from exc

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        self._raise_pending(config)
        try:
            return await self.inner.aput(config, checkpoint, metadata, new_versions)
        except Exception as exc:
            raise CheckpointWriteError(self.inner, "checkpoint", exc) from exc

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        try:
            self.inner.put_writes(config, writes, task_id, task_path)
        except Exception as exc:
            raise self._fail(config, "pending writes", exc) from exc

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        try:
            await self.inner.aput_writes(config, writes, task_id, task_path)
        except Exception as exc:
            raise self._fail(config, "pending writes", exc) from exc

    # -- everything else: passed through ------------------------------------------------
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self.inner.get_tuple(config)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self.inner.aget_tuple(config)

    def list(self, config: RunnableConfig | None, **kwargs: Any) -> Iterator[CheckpointTuple]:
        return self.inner.list(config, **kwargs)

    def alist(self, config: RunnableConfig | None, **kwargs: Any) -> AsyncIterator[CheckpointTuple]:
        return self.inner.alist(config, **kwargs)

    def get_next_version(self, current: Any, channel: None) -> Any:
        return self.inner.get_next_version(current, channel)

    def get_delta_channel_history(self, **kwargs: Any) -> Any:
        return self.inner.get_delta_channel_history(**kwargs)

    async def aget_delta_channel_history(self, **kwargs: Any) -> Any:
        return await self.inner.aget_delta_channel_history(**kwargs)

    def delete_thread(self, thread_id: str) -> None:
        self.inner.delete_thread(thread_id)

    async def adelete_thread(self, thread_id: str) -> None:
        await self.inner.adelete_thread(thread_id)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self.inner.copy_thread(source_thread_id, target_thread_id)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self.inner.acopy_thread(source_thread_id, target_thread_id)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self.inner.delete_for_runs(run_ids)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self.inner.adelete_for_runs(run_ids)

    def prune(self, thread_ids: Sequence[str], **kwargs: Any) -> None:
        self.inner.prune(thread_ids, **kwargs)

    async def aprune(self, thread_ids: Sequence[str], **kwargs: Any) -> None:
        await self.inner.aprune(thread_ids, **kwargs)
