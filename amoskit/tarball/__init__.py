"""The saved image file: streaming gzip/tar reading, the layouts docker save writes, layers, and parallel gzip writing."""
