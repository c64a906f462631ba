"""File formats shared by the toolchain (writer) and the runtime (reader); NumPy only.

``layer_table``: ``LayerQuantTable``, one quantized layer; ``packed_tables``: the ``tables.npz``
format of quantized bundles (``pack_tables`` / ``unpack_tables``).
"""
