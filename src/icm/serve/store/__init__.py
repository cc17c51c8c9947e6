"""The service's database: tables, the Store that reads and writes them, and migrations."""

from icm.serve.store.database import ResultFilter, Store
from icm.serve.store.migrate import migrate

__all__ = ["ResultFilter", "Store", "migrate"]
