"""The paper's published work (Ganerod et al., arXiv 2310.05959), used as it was used.

    facts        where its artefacts are and how they are laid out; its event table, Tables 7, 8
    dataset      `lsd import paper`: its global_dataset as event folders (tifs: its tif reader)
    inventories  its inventory polygons burnt into labels
    runs         its 360 trained models as RUNS folders; `models`: `lsd import paper-models`
    protocol     `lsd evaluate --protocol paper`: its scoring, Tables 7 and 8

The paper's procedures that need torch (its normalisation statistics, centre crop and threshold)
stay on the training floor in lsd.training.paper, which lsd.training.loop uses too.
"""
