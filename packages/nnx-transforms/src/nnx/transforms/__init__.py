"""nnx.transforms: public interface of the nnx-transforms distribution."""

__all__: list[str] = []
