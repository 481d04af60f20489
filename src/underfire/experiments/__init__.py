"""End-to-end studies: the demo audit and the reproductions of the source papers."""
