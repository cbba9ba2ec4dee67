"""archiver: a neural collection archiver.

``pack`` learns a small codec for one collection and writes one ``.nca`` archive; ``extract`` gives the
collection back. See README.md and docs/FORMAT.md.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
