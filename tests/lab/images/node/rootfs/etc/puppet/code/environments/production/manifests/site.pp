# The lab's stand-in for the alibuild hostgroups (alibuild/mesos/master and alibuild/mesos/slave).
class alibuild::base {
  file { '/etc/motd':
    content => "ALICE build infrastructure: managed by Puppet, changes will be overwritten\n",
  }
  service { ['ssh', 'docker', 'prometheus-node-exporter']:
    ensure => running,
    enable => true,
  }
}

node /^alimesos/ {
  include alibuild::base
  service { ['nomad', 'consul', 'vault', 'prometheus', 'dsmcad']:
    ensure => running,
    enable => true,
  }
}

node default {
  include alibuild::base
  service { 'nomad':
    ensure => running,
    enable => true,
  }
}
