"""The two engines of ``tango run``: :mod:`tango.engines.local` scores a file in this process,
crash-safe and resumable; :mod:`tango.engines.ray` scores files on Ray Data actor pools.

Both write rows through :mod:`tango.writers`, so their outputs have the same columns and values.
Nothing is imported here: the local engine must not pull Ray, an optional dependency.
"""
