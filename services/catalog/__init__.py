"""The catalog service: products, categories and reviews over SQLAlchemy, with variants."""
