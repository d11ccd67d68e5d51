"""A name -> thing table, so that adding a dataset or an objective is one new file."""
from .errors import ConfigError


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._items = {}

    def register(self, name: str):
        def add(thing):
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = thing
            return thing
        return add

    def get(self, name: str):
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r}; choose from: {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name):
        return name in self._items

    def __iter__(self):
        return iter(self._items)

    def items(self):
        return self._items.items()
