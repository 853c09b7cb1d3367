"""Evidence bundles: the selected items of an archive as a signed BagIt bag that anyone can verify.

select.py   which items (selectors that combine)       gather.py   their rows and ledger entries
extract.py  the original WARC records, byte for byte   report.py   report.html
write.py    the bag, custody.json, the signature       verify.py   verify-bundle, without the archive
wacz.py     the optional WACZ package
"""
