"""The package's public surface is what ``__all__`` says (drift test, httpx-style)."""

from gridledger import privacy


def test_all_names_exist_and_are_sorted() -> None:
    assert all(hasattr(privacy, name) for name in privacy.__all__)
    assert privacy.__all__ == sorted(privacy.__all__)
