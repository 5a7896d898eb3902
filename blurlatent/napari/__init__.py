"""The napari plugin (npe2 manifest ``blurlatent/napari.yaml``; from a clone
``pip install -e '.[napari]' 'napari[pyqt6]'``: docs/napari.md).

- ``widgets``: the Deblur and Blur synthesis dock widgets;
- ``panel``: what they share: Run/Cancel, a tile progress bar, the thread worker, notifications;
- ``jobs``: requests → ``inference.Predictor`` → layer data, without napari or Qt;
- ``reader``: File > Open for OME-TIFF, ImageJ and OME-Zarr z-stacks, one layer per channel, scaled in µm;
- ``sample``: a synthetic z-stack made on the fly.

Nothing here is imported by ``import blurlatent`` or the command line: napari and Qt load only when
napari asks for a contribution.
"""
