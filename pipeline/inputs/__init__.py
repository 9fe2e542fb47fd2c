"""What the user hands in: areas of interest, the cell grid, context zones and permit registers.

Every reader here takes any vector format in any CRS, repairs what can be repaired, says what it
repaired, and refuses with the file, the field and the fix what it cannot use.
"""
