"""Request and response bodies. Bounds on every field: bad input is a 422 with a message."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class RatingSummary(BaseModel):
    count: int
    mean: float | None


class RatingBreakdown(RatingSummary):
    """The product page's rating block: how many reviews, their mean, and each star's count."""

    histogram: dict[int, int] = Field(description="reviews per star, 1 to 5 (all five present)")


class ProductSummary(BaseModel):
    id: int
    name: str
    price: float
    category_id: int
    category: str
    reviews: RatingSummary


class ProductPage(BaseModel):
    items: list[ProductSummary]
    next_cursor: int | None = Field(None, description="keyset pagination: pass as `cursor`")
    next_offset: int | None = Field(None, description="offset pagination: pass as `offset`")


class ReviewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    product_id: int
    rating: int
    text: str
    author: str
    created_at: datetime


class ProductBrief(BaseModel):
    """A product without its reviews: one primary-key look-up (the cheap read of the lab)."""

    id: int
    name: str
    price: float
    stock: int
    category_id: int
    category: str


class ProductDetail(ProductBrief):
    """The product page a shop shows: the product, its rating summary, the latest reviews."""

    description: str
    reviews: RatingBreakdown
    latest_reviews: list[ReviewOut]


class TopProduct(BaseModel):
    id: int
    name: str
    price: float
    reviews: RatingSummary


class CategoryTop(BaseModel):
    category_id: int
    category: str
    products: list[TopProduct]


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    rating: int = Field(..., ge=1, le=5)
    text: str = Field(..., min_length=1, max_length=2000)
    author: str = Field(..., min_length=1, max_length=80)


class ProductFilters(BaseModel):
    category: int | None = None
    min_price: float | None = None
    max_price: float | None = None
    q: str | None = None
    limit: int = 20
    offset: int = 0
    cursor: int | None = None
