"""The dataset is deterministic: same seed and size, same rows, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from perflab_services.catalog import datagen


def test_same_seed_same_rows_other_seed_other_rows(tmp_path):
    made = [
        datagen.generate(f"sqlite:///{tmp_path / f'{name}.sqlite3'}", "tiny", seed=seed)
        for name, seed in (("a", 7), ("b", 7), ("c", 8))
    ]
    assert [(m["products"], m["reviews"]) for m in made] == [("200", "2000")] * 3
    sums = {
        name: datagen.checksums(f"sqlite:///{tmp_path / f'{name}.sqlite3'}")
        for name in ("a", "b", "c")
    }
    assert sums["a"] == sums["b"]
    assert sums["a"]["products"] != sums["c"]["products"]
    assert sums["a"]["reviews"] != sums["c"]["reviews"]
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file left behind"


def test_session_database_holds_the_same_rows_as_a_fresh_sqlite_generation(database_url, tmp_path):
    """On CI's external run this compares PostgreSQL (loaded with COPY) with SQLite."""
    fresh = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    datagen.generate(fresh, "tiny", seed=42)
    assert datagen.checksums(database_url) == datagen.checksums(fresh)


def test_review_counts_follow_the_traffic_popularity():
    """Product k gets a handful plus a share of the rest in proportion to 1/k, like requests."""
    import random

    for name in ("tiny", "default"):
        size = datagen.SIZES[name]
        counts = datagen.review_counts(random.Random(42), size)
        assert len(counts) == size.products and sum(counts) == size.reviews
        assert counts == datagen.review_counts(random.Random(42), size), "deterministic"
        assert min(counts) >= datagen.HANDFUL[0]
        assert counts[0] == max(counts)
        # popularity 1/k: the 10th product has about a tenth of the first one's reviews
        assert 0.05 < counts[9] / counts[0] < 0.2
    default = datagen.review_counts(random.Random(42), datagen.SIZES["default"])
    assert default[0] > 10_000 and default[99] > 100, "the hottest have thousands"
    assert sorted(default)[len(default) // 2] <= 10, "the tail a handful"
