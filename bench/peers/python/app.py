"""Benchmark peer for the HTTP phase: the API's three user endpoints as the seed teaches them.

FastAPI routes with the ``DatabaseService`` injected by ``Depends(get_db_service)``, one
``AsyncSession`` per request from ``async_sessionmaker``, async SQLAlchemy 2.0 over asyncpg
with the engine's default pool, and Pydantic response models; run under uvicorn with one
worker per core::

    DATABASE_URL=postgres://... uvicorn app:app --workers 2 --app-dir bench/peers/python

It answers with the same bodies as the ``api`` crate. ``DATABASE_URL`` is read at import.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from urllib.parse import urlsplit, urlunsplit

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, field_serializer
from sqlalchemy import DateTime, Integer, String, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def asyncpg_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(("postgresql+asyncpg",) + tuple(parts[1:]))


engine = create_async_engine(
    asyncpg_url(os.environ["DATABASE_URL"]),
    echo=False,  # the seed's echo=True, set to False for production as it advises
    connect_args={"ssl": os.environ.get("BENCH_SSLMODE", "disable")},
)
SessionLocal = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "user"
    __mapper_args__ = {"eager_defaults": True}  # RETURNING the server-side timestamps

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class DatabaseService:
    async def get_session(self) -> AsyncSession:
        return SessionLocal()


_service = DatabaseService()


def get_db_service() -> DatabaseService:
    return _service


class UserOut(BaseModel):
    id: int
    email: str
    name: str
    created_at: datetime
    updated_at: datetime

    model_config = {"from_attributes": True}

    @field_serializer("created_at", "updated_at")
    def _rfc3339(self, at: datetime) -> str:
        return at.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


class UserPageOut(BaseModel):
    users: list[UserOut]
    next_after: int | None


class UserCreate(BaseModel):
    email: str
    name: str


app = FastAPI()


@app.get("/users/{user_id}", response_model=UserOut)
async def get_user(user_id: int, db_service: DatabaseService = Depends(get_db_service)):
    session = await db_service.get_session()
    async with session:
        result = await session.execute(select(User).where(User.id == user_id))
        user = result.scalar_one_or_none()
    if user is None:
        raise HTTPException(status_code=404, detail=f"no user {user_id}")
    return user


@app.post("/users", response_model=UserOut, status_code=201)
async def create_user(body: UserCreate, db_service: DatabaseService = Depends(get_db_service)):
    session = await db_service.get_session()
    async with session:
        user = User(email=body.email.strip().lower(), name=body.name)
        session.add(user)
        try:
            await session.commit()
        except IntegrityError:
            raise HTTPException(status_code=409, detail="email taken") from None
    return user


@app.get("/users", response_model=UserPageOut)
async def list_users(
    after: int = 0, limit: int = 50, db_service: DatabaseService = Depends(get_db_service)
):
    limit = max(1, min(limit, 1000))
    session = await db_service.get_session()
    async with session:
        result = await session.execute(
            select(User).where(User.id > after).order_by(User.id).limit(limit + 1)
        )
        users = list(result.scalars().all())
    next_after = None
    if len(users) > limit:
        users = users[:limit]
        next_after = users[-1].id
    return UserPageOut(users=[UserOut.model_validate(u) for u in users], next_after=next_after)
