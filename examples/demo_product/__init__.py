"""A small multi-user product (Flask + SQLite) that uses impersonation-kit. See README.md."""
from examples.demo_product.app import create_app

__all__ = ["create_app"]
