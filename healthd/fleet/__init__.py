"""The fleet (reference §14): instances of one service see each other through etcd.

    settings.py  `fleet:` config
    etcd.py      a small etcd v3 client over its JSON gateway (aiohttp)
    view.py      pure: published reports, the in-memory fleet view, the panic rule
    agent.py     the background task: lease, publish, watch, apply the rule, drain slots
    slots.py     drain slots: an etcd transaction on lease-backed keys
    exposed.py   what it shows: GET /admin/fleet's body, the gauges

Without `fleet:` in the config none of it runs, and nothing else changes.
"""
