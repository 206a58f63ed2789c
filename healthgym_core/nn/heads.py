"""Layout helpers shared by the generator and critic."""

from __future__ import annotations

from dataclasses import dataclass

from healthgym_core.data.schema import Schema


@dataclass(frozen=True)
class Layout:
    """The parts of a schema the networks need: reals first, then one-hot blocks."""

    n_real: int
    blocks: tuple[tuple[int, int], ...]
    embedding_sizes: tuple[int, ...]
    width: int

    @classmethod
    def of(cls, schema: Schema) -> "Layout":
        return cls(
            n_real=schema.n_real,
            blocks=tuple(schema.blocks()),
            embedding_sizes=tuple(v.embedding_size for v in schema.categoricals),
            width=schema.width,
        )

    @property
    def embedding_width(self) -> int:
        return self.n_real + sum(self.embedding_sizes)
