"""Drivers. They talk only to the user APIs (smartio.lending, smartio.sisci), never to
smartio.hw or smartio.node: the same driver runs on a local and on a borrowed device."""
