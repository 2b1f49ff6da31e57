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
  # Agents boot with cgroup v1 (alibuild/mesos/slave): the boot configuration gets the kernel argument;
  # a reboot applies it.
  exec { 'kernel-argument-cgroup-v1':
    command => '/bin/sed -i \'s/^GRUB_CMDLINE_LINUX="\\(.*\\)"/GRUB_CMDLINE_LINUX="\\1 systemd.unified_cgroup_hierarchy=0"/\' /etc/default/grub',
    unless  => '/bin/grep -q "systemd.unified_cgroup_hierarchy=0" /etc/default/grub',
  }
}
