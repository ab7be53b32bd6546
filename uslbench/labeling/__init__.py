"""The loop from picking images to training on them, for your own image folders:

- `picks`: the table of picked images (rank, pool index, path relative to the folder, cluster id,
  selector score) and its writers (CSV, JSON, a Label Studio task list);
- `contact_sheet`: a PNG grid of the picked thumbnails, to look at before paying for labels;
- `labels_file`: reading back a `path,label` CSV, checked against the pool and the selection.
"""
