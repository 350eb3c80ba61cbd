"""asyncio I/O around the sans-I/O wire layer: listener, client sessions, upstream connections."""
