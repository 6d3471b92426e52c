"""nnx.optim: public interface of the nnx-optim distribution."""

__all__: list[str] = []
