"""A bug for notebook 14's tests to catch, loaded as a pytest plugin (`-p bug_forgets_category`).

It wraps the optimized repository's list so that it ignores the category filter: every page
still looks fine by eye (products, prices, ratings), only some of them are from another category.
Change it to a bug of your own (an off-by-one in `limit`, a wrong rating mean) and re-run.
"""

from __future__ import annotations

from typing import Any

from perflab_services.catalog import repository, schemas

_original = repository.OptimizedRepository.list_products


def _list_products(self: Any, s: Any, f: schemas.ProductFilters) -> schemas.ProductPage:
    return _original(self, s, f.model_copy(update={"category": None}))


repository.OptimizedRepository.list_products = _list_products  # type: ignore[method-assign]
