"""Benchmark peer: SQLAlchemy 2.x asyncio ORM over asyncpg.

Mirrors the stack of the Python quickstart template whose ``DatabaseService``
wraps ``create_async_engine`` + ``async_sessionmaker``: one fresh ``AsyncSession``
per operation, ORM entity ``User``, pool of ``BENCH_P`` connections, ``BENCH_C``
asyncio tasks.

Usage: ``python bench_peer.py <workload>`` with workload one of
``point-select | page | insert-one | bulk-insert | lowercase | health``.
``bench/run`` applies the schema and seeds the table first; this script only
runs and times the workload and prints one JSON line (see bench/README.md).

Reads the shared ``BENCH_*`` environment variables (defaults in brackets):
BENCH_DATABASE_URL [postgres://postgres@127.0.0.1:5432/bench],
BENCH_SSLMODE [disable], BENCH_N [10000], BENCH_C [8], BENCH_P [8],
BENCH_POINT_OPS [50000] (also the page workload's count), BENCH_INSERT_OPS [20000], BENCH_BULK_ROWS [100000],
BENCH_LOWER_ROWS [200000], BENCH_HEALTH_OPS [10000]; BENCH_IMPL_NAME overrides
the "impl" field.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import resource
import sys
import time
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import DateTime, Integer, String, func, insert, select, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def env_int(key: str, default: int) -> int:
    v = os.environ.get(key, "").strip()
    return int(v) if v else default


URL = os.environ.get("BENCH_DATABASE_URL", "").strip() or "postgres://postgres@127.0.0.1:5432/bench"
SSLMODE = os.environ.get("BENCH_SSLMODE", "").strip() or "disable"
N = env_int("BENCH_N", 10_000)
C = env_int("BENCH_C", 8)
P = env_int("BENCH_P", 8)
POINT_OPS = env_int("BENCH_POINT_OPS", 50_000)
PAGE_SIZE = 50
INSERT_OPS = env_int("BENCH_INSERT_OPS", 20_000)
BULK_ROWS = env_int("BENCH_BULK_ROWS", 100_000)
LOWER_ROWS = env_int("BENCH_LOWER_ROWS", 200_000)
HEALTH_OPS = env_int("BENCH_HEALTH_OPS", 10_000)
IMPL = os.environ.get("BENCH_IMPL_NAME", "").strip() or "python"


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


def asyncpg_url(url: str) -> str:
    """postgres://... -> postgresql+asyncpg://... (SQLAlchemy's async dialect URL)."""
    parts = urlsplit(url)
    return urlunsplit(("postgresql+asyncpg",) + tuple(parts[1:]))


class DatabaseService:
    """Same shape as the template's service: engine + session factory + health check."""

    def __init__(self, url: str, pool_size: int, sslmode: str) -> None:
        self.engine: AsyncEngine = create_async_engine(
            asyncpg_url(url),
            echo=False,
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=60,
            connect_args={"ssl": sslmode},
        )
        self.session_factory = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )

    def get_session(self) -> AsyncSession:
        return self.session_factory()

    async def health_check(self) -> dict:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return {"status": "healthy"}

    async def warm(self, n: int) -> None:
        """Open all n pool connections at once (held together), then release them."""
        conns = [await self.engine.connect() for _ in range(n)]
        for conn in conns:
            await conn.execute(text("SELECT 1"))
        for conn in conns:
            await conn.close()

    async def dispose(self) -> None:
        await self.engine.dispose()


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def percentile_us(sorted_ns: list[int], p: float) -> float | None:
    """Nearest-rank percentile, same definition as the other implementations."""
    if not sorted_ns:
        return None
    rank = max(1, math.ceil(p * len(sorted_ns)))
    return round(sorted_ns[min(rank, len(sorted_ns)) - 1] / 1000.0, 1)


def emit(workload: str, ops: int, secs: float, cpu_s: float, lat_ns: list[int]) -> None:
    lat_ns.sort()
    print(
        json.dumps(
            {
                "impl": IMPL,
                "workload": workload,
                "ops": ops,
                "secs": round(secs, 6),
                "ops_per_s": round(ops / secs, 1),
                "p50_us": percentile_us(lat_ns, 0.50),
                "p99_us": percentile_us(lat_ns, 0.99),
                "cpu_s": round(cpu_s, 6),
                "cpu_us_per_op": round(cpu_s * 1e6 / ops, 2),
            }
        ),
        flush=True,
    )


async def run_concurrent(total: int, op) -> tuple[float, float, list[int]]:
    """total ops over C asyncio tasks; op(i) gets a global op index."""
    counter = iter(range(total))
    lat: list[int] = []
    clock = time.perf_counter_ns

    async def worker() -> None:
        for i in counter:  # shared iterator: each index is taken exactly once
            s = clock()
            await op(i)
            lat.append(clock() - s)

    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(C)))
    secs = time.perf_counter() - t0
    return secs, cpu_seconds() - cpu0, lat


async def point_select(db: DatabaseService) -> None:
    rnd = random.randint

    async def op(_i: int) -> None:
        uid = rnd(1, N)
        async with db.get_session() as session:
            user = await session.get(User, uid)
        if user is None or user.id != uid:
            raise RuntimeError(f"user {uid} not found (is the table seeded with BENCH_N rows?)")

    secs, cpu, lat = await run_concurrent(POINT_OPS, op)
    emit("point-select", POINT_OPS, secs, cpu, lat)


async def page(db: DatabaseService) -> None:
    rnd = random.randint
    last = max(N - PAGE_SIZE, 0)

    async def op(_i: int) -> None:
        after = rnd(0, last)
        async with db.get_session() as session:
            result = await session.execute(
                select(User).where(User.id > after).order_by(User.id).limit(PAGE_SIZE)
            )
            users = result.scalars().all()
        if len(users) != PAGE_SIZE:
            raise RuntimeError(f"a page after {after} had {len(users)} rows")

    secs, cpu, lat = await run_concurrent(POINT_OPS, op)
    emit("page", POINT_OPS, secs, cpu, lat)


async def insert_one(db: DatabaseService) -> None:
    async def op(i: int) -> None:
        async with db.get_session() as session:
            session.add(User(email=f"user{i}@bench.example", name=f"User {i}"))
            await session.commit()

    secs, cpu, lat = await run_concurrent(INSERT_OPS, op)
    emit("insert-one", INSERT_OPS, secs, cpu, lat)


async def bulk_insert(db: DatabaseService) -> None:
    # Input built outside the timed region, as in every implementation.
    rows = [{"email": f"bulk{i}@bench.example", "name": f"Bulk User {i}"} for i in range(BULK_ROWS)]
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    async with db.get_session() as session:
        await session.execute(insert(User), rows)
        await session.commit()
    secs = time.perf_counter() - t0
    emit("bulk-insert", BULK_ROWS, secs, cpu_seconds() - cpu0, [])


async def lowercase(db: DatabaseService) -> None:
    # A data migration as the template's Alembic docs write it:
    # op.get_bind().execute(sa.text("UPDATE ... SET email = LOWER(email)")).
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    async with db.engine.begin() as conn:
        result = await conn.execute(text('UPDATE "user" SET email = lower(email)'))
    secs = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    if result.rowcount != LOWER_ROWS:
        raise RuntimeError(f"lowercase touched {result.rowcount} rows, expected BENCH_LOWER_ROWS={LOWER_ROWS}")
    emit("lowercase", result.rowcount, secs, cpu, [])


async def health(db: DatabaseService) -> None:
    lat: list[int] = []
    clock = time.perf_counter_ns
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    for _ in range(HEALTH_OPS):
        s = clock()
        status = await db.health_check()
        lat.append(clock() - s)
        assert status["status"] == "healthy"
    secs = time.perf_counter() - t0
    emit("health", HEALTH_OPS, secs, cpu_seconds() - cpu0, lat)


WORKLOADS = {
    "point-select": point_select,
    "page": page,
    "insert-one": insert_one,
    "bulk-insert": bulk_insert,
    "lowercase": lowercase,
    "health": health,
}


async def main(workload: str) -> None:
    db = DatabaseService(URL, P, SSLMODE)
    try:
        await db.warm(P)
        await WORKLOADS[workload](db)
    finally:
        await db.dispose()


if __name__ == "__main__":
    wl = sys.argv[1] if len(sys.argv) > 1 else ""
    if wl not in WORKLOADS:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(WORKLOADS)}}}")
    asyncio.run(main(wl))
