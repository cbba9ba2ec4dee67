"""The .nca container: HDF5 layout (format), atomic writer, checking reader, record encoding."""
