"""Declarative base, naming convention and the UTC datetime column type."""
from datetime import datetime, timezone

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, registry

# The largest id, version or count a row can hold (an INTEGER column on PostgreSQL): a larger number
# cannot name a row, and handing one to the database is an error ("out of range"), not "not found".
MAX_ID = 2 ** 31 - 1

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow():
    return datetime.now(timezone.utc)


def one_of(column, values):
    """CHECK built from the tuple the code uses, so the two cannot drift apart.

    The SQL text is exactly what the migrations created ('a', 'b' in tuple order), so
    building it here changes nothing in the database.
    """
    allowed = ", ".join("'" + value.replace("'", "''") + "'" for value in values)
    return sa.CheckConstraint(f"{column} IN ({allowed})", name=column)


class UtcDateTime(sa.types.TypeDecorator):
    """Stores aware datetimes as UTC and always returns aware UTC datetimes.

    SQLite has no time zone support, so naive values read back are tagged UTC.
    Naive values written are refused: they are a bug at the call site.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    registry = registry(
        metadata=sa.MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={datetime: UtcDateTime()},
    )


# Defined beside the base so model modules need not import queue_app.extensions (which re-exports it).
db = SQLAlchemy(model_class=Base)
