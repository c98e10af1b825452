"""Names of users and groups a SelfPrivacy NixOS server defines itself: POST /users refuses them
(Reserved, 409). A user of that name would alias a system account or break the next nixos-rebuild.

The one list, gathered from:
- NixOS's nixos/modules/misc/ids.nix (nixpkgs, 2024-2025): every static uid and gid name, and the
  names it marks as dynamically allocated, removed or unused (a server installed earlier may still
  have them; reserving one too many costs nothing);
- the groups and users NixOS itself creates beyond ids.nix (users-groups.nix, systemd, udev, nix,
  dhcpcd, ...);
- the service users and groups of SelfPrivacy's modules (selfprivacy-nixos-config: sp-modules/*,
  simple-nixos-mailserver, the 1.2 server's own forbidden list);
- the classic system accounts (Debian base-passwd / LSB: sync, sys, bin, ...), which tools and
  habits expect to be system accounts.
RESERVED_PREFIXES: families of names (systemd-*, nixbld1..N).
"""

RESERVED_PREFIXES = ("systemd", "nixbld")

_IDS_NIX = """
root wheel kmem tty messagebus haldaemon disk vsftpd ftp bitlbee avahi nagios atd postfix postdrop
dovecot tomcat audio floppy uucp lp proc pulseaudio gpsd cdrom tape video dialout polkituser utmp
ddclient davfs2 disnix osgi tor cups foldingathome sabnzbd kdm ghostone git fourstore fourstorehttp
virtuoso rtkit dovecot2 dovenull2 prayer mpd clamav fprot bind wwwrun adm spamd networkmanager nslcd
scanner nginx chrony systemd-journal smtpd smtpq supybot iodined libvirtd graphite statsd
transmission postgres vboxusers vboxsf smbguest varnish datadog lighttpd lightdm freenet ircd bacula
almir deluge mysql rabbitmq activemq gnunet oidentd quassel amule minidlna elasticsearch tcpcryptd
firebird keys haproxy mongodb openldap users cgminer munin logcheck nix-ssh dictd couchdb searx kippo
jenkins systemd-journal-gateway notbit aerospike ngircd btsync minecraft vault rippled murmur
foundationdb newrelic starbound hydra spiped teamspeak influxdb nsd gitolite znc polipo mopidy docker
gdm dhcpd dhcpcd siproxd mlmmj neo4j riemann riemanndash radvd zookeeper dnsmasq uhub yandexdisk mxisd
consul mailpile redmine seeks prosody i2pd systemd-coredump systemd-network systemd-resolve
systemd-timesync liquidsoap etcd hbase opentsdb scollector bosun kubernetes peerflix chronos gitlab
tox-bootstrapd cadvisor nylon apache-kafka panamax exim fleet input sddm tss memcached ntp zabbix
redis unifi uptimed zope2 ripple-data-api mediatomb rdnssd ihaskell i2p lambdabot asterisk plex plexpy
grafana skydns ripple-rest nix-serve tvheadend uwsgi gitit riemanntools subsonic riak shout gateone
namecoin lxd kibana xtreemfs calibre-server heapster bepasty pumpio nm-openvpn mathics ejabberd
postsrsd opendkim dspam gale matrix-synapse rspamd rmilter cfdyndns gammu-smsd pdnsd octoprint
avahi-autoipd nntp-proxy mjpg-streamer radicale hydra-queue-runner hydra-www syncthing caddy taskd
factorio emby graylog sniproxy nzbget mosquitto toxvpn squeezelite turnserver smokeping gocd-agent
gocd-server terraria mattermost prometheus telegraf gitlab-runner postgrey hound leaps ipfs stanchion
riak-cs infinoted sickbeard headphones couchpotato gogs pdns-recursor kresd rpc geoip fcron sonarr
radarr jackett aria2 clickhouse rslsync minio kanboard pykms kodi restya-board mighttpd2 hass monero
ceph duplicati monetdb restic openvpn meguca yarn hdfs mapred hadoop hydron cfssl cassandra
qemu-libvirtd kvm render sgx zeronet lirc lidarr slurm kapacitor solr alerta minetest rss2email
cockroachdb zoneminder paperless mailman zigbee2mqtt shadow hqplayer moonraker distcc webdav pipewire
rstudio-server localtimed automatic-timezoned uinput shoko onepassword onepassword-cli nixbld nobody
nogroup
"""

_NIXOS = """
nscd sshd nixbld systemd-oom systemd-journal-remote systemd-journal-upload polkitd rtkit uuidd
resolvconf sgx render kvm audio video input tty dialout lp floppy cdrom tape utmp wheel users
nogroup keys shadow messagebus
"""

_SELFPRIVACY = """
selfprivacy-api dovenull virtualMail vmail acmereceivers acme knot-resolver redis-rspamd
redis-nextcloud nextcloud bitwarden_rs vaultwarden pleroma ocserv gitea forgejo jitsi-meet jicofo
jitsi-videobridge jvb matrix-synapse mautrix-telegram mautrix-whatsapp murmur mumble roundcube
vikunja writefreely hedgedoc gotosocial actual kanidm node-exporter prometheus grafana loki alloy
postgres postgresql redis memcached coturn turnserver
"""

_CLASSIC = """
bin daemon sys sync games man mail news proxy www-data backup list irc gnats operator staff sudo src
sasl plugdev netdev tss systemd-journal
"""

RESERVED = frozenset((_IDS_NIX + _NIXOS + _SELFPRIVACY + _CLASSIC).split())
