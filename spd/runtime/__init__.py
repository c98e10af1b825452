"""What spd and spd-gateway share at run time, apart from the bus contract (spd/contract.py): the bus
connection, idle exit, the journal and the audit trail, systemd's watchdog, the stall detector. No
domain code: the gateway imports these, and nothing else of spd's but spd.contract, spd.errors and
spd.rest."""
