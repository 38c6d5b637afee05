"""Testing tools that ship with PyC (fuzzers of the importer, the artifact loader and the compiler)."""
