"""The napari plugin (npe2 manifest ``blurlatent/napari.yaml``; ``pip install 'blurlatent[napari]'``).

- ``widgets``: the Deblur and Blur synthesis dock widgets;
- ``panel``: what they share: Run/Cancel, a tile progress bar, the thread worker, notifications;
- ``jobs``: requests → ``inference.Predictor`` → layer data, without napari or Qt;
- ``sample``: a synthetic z-stack made on the fly.

Nothing here is imported by ``import blurlatent`` or the command line: napari and Qt load only when
napari asks for a contribution.
"""
