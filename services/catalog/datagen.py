"""A deterministic, seeded catalog dataset: categories, products, reviews.

The same seed and size give the same rows on every machine, so students compare numbers that
mean the same thing. Review counts follow the same popularity as the lab's traffic (Zipf over
product ids, id 1 the hottest: `loadtests/lab.py`): what people look at most is what they
review most, so the hottest products have thousands of reviews and the tail a handful, the way
real catalogs are. That makes the product page of a popular product real work for the database
(its rating summary counts thousands of rows), which is what a cache then saves; each product
also has its own rating profile, so the pages differ.

SQLite datasets are written to a temporary file and renamed into place, so an interrupted
generation never leaves half a database behind.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from time import perf_counter

from sqlalchemy import Column, Connection, MetaData, String, Table, insert, select
from sqlalchemy.engine import make_url

from perflab_services.catalog.core.db import is_sqlite, make_engine
from perflab_services.catalog.models import Base, Category, Product, Review

GENERATOR_VERSION = "2"


@dataclass(frozen=True)
class Size:
    categories: int
    products: int
    reviews: int


SIZES: dict[str, Size] = {
    "tiny": Size(categories=5, products=200, reviews=2_000),
    "small": Size(categories=20, products=2_000, reviews=20_000),
    "medium": Size(categories=40, products=10_000, reviews=100_000),
    "default": Size(categories=50, products=50_000, reviews=500_000),
}

_ADJ = [
    "Classic",
    "Compact",
    "Deluxe",
    "Eco",
    "Ergonomic",
    "Fast",
    "Heavy-Duty",
    "Light",
    "Modern",
    "Portable",
    "Premium",
    "Pro",
    "Quiet",
    "Rugged",
    "Slim",
    "Smart",
    "Solid",
    "Sturdy",
    "Ultra",
    "Vintage",
    "Wireless",
    "Everyday",
    "Silver",
    "Midnight",
]
_NOUN = [
    "Backpack",
    "Blender",
    "Camera",
    "Chair",
    "Desk",
    "Drill",
    "Headphones",
    "Kettle",
    "Keyboard",
    "Lamp",
    "Monitor",
    "Mouse",
    "Notebook",
    "Pan",
    "Router",
    "Scooter",
    "Speaker",
    "Tent",
    "Thermos",
    "Toaster",
    "Umbrella",
    "Watch",
    "Wallet",
    "Jacket",
]
_CATEGORY = [
    "Audio",
    "Bags",
    "Books",
    "Camping",
    "Cameras",
    "Cleaning",
    "Computers",
    "Cooking",
    "Cycling",
    "Fitness",
    "Furniture",
    "Garden",
    "Gaming",
    "Health",
    "Kitchen",
    "Lighting",
    "Music",
    "Office",
    "Outdoor",
    "Pets",
    "Phones",
    "Sports",
    "Storage",
    "Tools",
    "Toys",
    "Travel",
    "Watches",
    "Baby",
    "Beauty",
    "Coffee",
    "Crafts",
    "Decor",
    "Diving",
    "Drones",
    "Fishing",
    "Hiking",
    "Kids",
    "Laundry",
    "Maps",
    "Party",
    "Photo",
    "Running",
    "Safety",
    "Sewing",
    "Skiing",
    "Sleep",
    "Snacks",
    "Surf",
    "Tea",
    "Yoga",
]
_WORDS = [
    "great",
    "solid",
    "cheap",
    "pricey",
    "works",
    "broke",
    "fast",
    "slow",
    "quiet",
    "loud",
    "light",
    "heavy",
    "love",
    "hate",
    "return",
    "again",
    "gift",
    "daily",
    "battery",
    "build",
    "quality",
    "size",
    "fit",
    "colour",
    "delivery",
    "box",
    "manual",
    "easy",
    "hard",
]
_AUTHORS = [
    f"{a}{n}" for a in ("ana", "ben", "chen", "dara", "eli", "fatima", "gus") for n in range(40)
]


def _chunks(rows: Iterator[dict], n: int) -> Iterator[list[dict]]:
    while chunk := list(itertools.islice(rows, n)):
        yield chunk


def _bulk_insert(conn: Connection, model: type[Base], rows: Iterator[dict], batch: int) -> None:
    """Insert rows in order. PostgreSQL gets them through COPY (several times faster than
    batched INSERTs); SQLite through executemany in one transaction, which is already fast."""
    if conn.dialect.name == "postgresql":
        rows = iter(rows)
        first = next(rows, None)
        if first is None:
            return
        columns = list(first)
        table = model.__tablename__
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in itertools.chain([first], rows):
                    copy.write_row([row[c] for c in columns])
        finally:
            cursor.close()
        return
    for chunk in _chunks(rows, batch):
        conn.execute(insert(model), chunk)


def checksums(database_url: str) -> dict[str, str]:
    """A SHA-256 per table over the generated rows (ordered by id), to compare datasets.

    Only the rows the generator wrote count (ids up to the sizes in `perflab_meta`), so the
    reviews the lab posts later do not change a dataset's checksum.
    """
    info = dataset_info(database_url)
    if info is None:
        raise ValueError(f"{database_url} holds no generated dataset")
    engine = make_engine(database_url)
    out = {}
    try:
        with engine.connect() as conn:
            for model, key in (
                (Category, "categories"),
                (Product, "products"),
                (Review, "reviews"),
            ):
                table = model.__table__
                cols = [c for c in table.columns if c.name != "idempotency_key"]
                stmt = select(*cols).where(table.c.id <= int(info[key])).order_by(table.c.id)
                digest = hashlib.sha256()
                for row in conn.execute(stmt):
                    digest.update(repr(tuple(row)).encode())
                out[key] = digest.hexdigest()
    finally:
        engine.dispose()
    return out


ZIPF_S = 1.0  # the popularity exponent, as the load's default (`zipf_s` in loadtests/lab.py)
HANDFUL = (1, 5)  # every product has at least a few reviews


def review_counts(rng: random.Random, size: Size) -> list[int]:
    """Reviews per product (index 0 is product 1): a handful each, the rest by popularity.

    The popular share goes to product k in proportion to 1 / k^ZIPF_S, the same weights the
    load gives to requests, and adds up exactly to `size.reviews` (largest remainders first).
    """
    base = [rng.randint(*HANDFUL) for _ in range(size.products)]
    rest = size.reviews - sum(base)
    if rest < 0:
        raise ValueError(f"{size} has fewer reviews than a handful per product")
    weights = [1 / k**ZIPF_S for k in range(1, size.products + 1)]
    total = sum(weights)
    shares = [rest * w / total for w in weights]
    counts = [b + int(x) for b, x in zip(base, shares, strict=True)]
    left = size.reviews - sum(counts)
    by_remainder = sorted(range(size.products), key=lambda i: (int(shares[i]) - shares[i], i))
    for i in by_remainder[:left]:
        counts[i] += 1
    return counts


# Rating weights (1 to 5 stars) of a poor and of an excellent product; each product's profile
# lies between them, so means range from about 2 to about 4.5.
_POOR = (6, 4, 3, 2, 1)
_GREAT = (1, 1, 2, 6, 12)


def _reviews(rng: random.Random, size: Size) -> Iterator[dict]:
    """Reviews grouped by product (as an import would write them), dates over 600 days."""
    base = datetime(2024, 1, 1)
    for pid, n in enumerate(review_counts(rng, size), start=1):
        q = rng.random()
        weights = [p + (g - p) * q for p, g in zip(_POOR, _GREAT, strict=True)]
        for rating in rng.choices((1, 2, 3, 4, 5), weights=weights, k=n):
            yield {
                "product_id": pid,
                "rating": rating,
                "text": " ".join(rng.choices(_WORDS, k=12)),
                "author": rng.choice(_AUTHORS),
                "created_at": base + timedelta(seconds=rng.randint(0, 600 * 86400)),
            }


def generate(database_url: str, size_name: str = "small", seed: int = 42) -> dict:
    """Create the schema and fill it. Returns what was made and how long it took."""
    if size_name not in SIZES:
        raise ValueError(f"unknown size {size_name!r}; choose one of {', '.join(SIZES)}")
    size = SIZES[size_name]
    t0 = perf_counter()
    target_url = database_url
    tmp_path: Path | None = None
    if is_sqlite(database_url):
        final = Path(make_url(database_url).database or "")
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        for p in (tmp_path, Path(f"{tmp_path}-wal"), Path(f"{tmp_path}-shm")):
            p.unlink(missing_ok=True)
        target_url = f"sqlite:///{tmp_path}"
    engine = make_engine(target_url)
    try:
        Base.metadata.drop_all(engine)
        meta_table(engine).drop(engine, checkfirst=True)
        Base.metadata.create_all(engine)
        rng = random.Random(seed)
        with engine.begin() as conn:
            conn.execute(
                insert(Category),
                [
                    {
                        "id": i,
                        "name": _CATEGORY[(i - 1) % len(_CATEGORY)]
                        + ("" if i <= len(_CATEGORY) else f" {i}"),
                    }
                    for i in range(1, size.categories + 1)
                ],
            )
            products = (
                {
                    "id": i,
                    "name": f"{rng.choice(_ADJ)} {rng.choice(_NOUN)} {i}",
                    "description": " ".join(rng.choices(_WORDS, k=30)),
                    "price": round(rng.lognormvariate(3.5, 0.9), 2),
                    "stock": rng.randint(0, 500),
                    "category_id": rng.randint(1, size.categories),
                }
                for i in range(1, size.products + 1)
            )
            _bulk_insert(conn, Product, products, 5_000)
            reviews = _reviews(rng, size)
            _bulk_insert(conn, Review, reviews, 10_000)
            if conn.dialect.name == "postgresql":
                # Fresh statistics, so the planner sees the real table sizes right away.
                conn.exec_driver_sql("ANALYZE categories, products, reviews")
        info = {
            "generator": GENERATOR_VERSION,
            "size": size_name,
            "seed": str(seed),
            "categories": str(size.categories),
            "products": str(size.products),
            "reviews": str(size.reviews),
        }
        table = meta_table(engine)
        table.create(engine)
        with engine.begin() as conn:
            conn.execute(insert(table), [{"key": k, "value": v} for k, v in info.items()])
    finally:
        engine.dispose()
    if tmp_path is not None:
        for suffix in ("-wal", "-shm"):
            Path(f"{tmp_path}{suffix}").unlink(missing_ok=True)
        os.replace(tmp_path, final)
    return {**info, "seconds": round(perf_counter() - t0, 2)}


def meta_table(engine) -> Table:
    md = MetaData()
    return Table(
        "perflab_meta",
        md,
        Column("key", String(40), primary_key=True),
        Column("value", String(200)),
    )


def dataset_info(database_url: str) -> dict[str, str] | None:
    """What dataset a database holds, or None if it holds none (or another generator's)."""
    if is_sqlite(database_url) and not Path(make_url(database_url).database or "").exists():
        return None
    engine = make_engine(database_url)
    try:
        table = meta_table(engine)
        with engine.connect() as conn:
            if not engine.dialect.has_table(conn, table.name):
                return None
            return {k: v for k, v in conn.execute(select(table.c.key, table.c.value))}
    finally:
        engine.dispose()


def ensure(database_url: str, size_name: str = "small", seed: int = 42) -> dict:
    """Generate the dataset unless the database already holds exactly this one."""
    info = dataset_info(database_url)
    wanted = {"generator": GENERATOR_VERSION, "size": size_name, "seed": str(seed)}
    if info and all(info.get(k) == v for k, v in wanted.items()):
        return {**info, "seconds": 0.0, "reused": True}
    return {**generate(database_url, size_name, seed), "reused": False}
