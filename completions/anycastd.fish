# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_anycastd_global_optspecs
    string join \n c/config= log-level= log-format= backend= socket= h/help V/version
end

function __fish_anycastd_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_anycastd_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_anycastd_using_subcommand
    set -l cmd (__fish_anycastd_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c anycastd -n "__fish_anycastd_needs_command" -s c -l config -d 'Configuration file, YAML (.yaml, .yml) or JSON (.json)' -r -F
complete -c anycastd -n "__fish_anycastd_needs_command" -l log-level -d 'Log verbosity: trace, debug, info, warn (warning), error (fatal, panic). Logs go to stderr' -r
complete -c anycastd -n "__fish_anycastd_needs_command" -l log-format -d 'Log line format' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c anycastd -n "__fish_anycastd_needs_command" -l backend -d 'Announce through this backend, overriding announcer.backend of the configuration file (which also decides the keys that are required)' -r -f -a "native\t'anycastd\'s own BGP speaker'
exabgp\t'ExaBGP\'s process API on stdin/stdout'
bird\t'A BIRD include file and BIRD\'s control socket'"
complete -c anycastd -n "__fish_anycastd_needs_command" -l socket -d 'The running daemon\'s control socket, for drain, undrain, check-now, reload and routes; default control.socket of the configuration file, else /run/anycastd/control/control.sock' -r -F
complete -c anycastd -n "__fish_anycastd_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c anycastd -n "__fish_anycastd_needs_command" -s V -l version -d 'Print version'
complete -c anycastd -n "__fish_anycastd_needs_command" -f -a "run" -d 'Run the daemon: check services and announce their routes (default)'
complete -c anycastd -n "__fish_anycastd_needs_command" -f -a "validate" -d 'Load and check the configuration, print a one-line summary'
complete -c anycastd -n "__fish_anycastd_needs_command" -f -a "check" -d 'Run every check once and print the results; exit 1 if a service is down'
complete -c anycastd -n "__fish_anycastd_needs_command" -f -a "status" -d 'Ask the running daemon for its status and print it; exit 1 unless every service is up'
complete -c anycastd -n "__fish_anycastd_needs_command" -f -a "drain" -d 'Drain services (every service when none are named): announce their routes with GRACEFUL_SHUTDOWN (65535:0) and the draining profile for drain_time, then withdraw them'
complete -c anycastd -n "__fish_anycastd_needs_command" -f -a "undrain" -d 'Lift drains set by `anycastd drain` (the node\'s when no service is named); routes come back once the service is up'
complete -c anycastd -n "__fish_anycastd_needs_command" -f -a "check-now" -d 'Run a round of checks of the named services (all when none) now, instead of at their next interval'
complete -c anycastd -n "__fish_anycastd_needs_command" -f -a "reload" -d 'Reload the daemon\'s configuration file (as SIGHUP does) and print the route changes; exit 1 when it is refused'
complete -c anycastd -n "__fish_anycastd_needs_command" -f -a "routes" -d 'Print what loading CONFIG would announce, withdraw or re-announce in the running daemon, without loading it'
complete -c anycastd -n "__fish_anycastd_needs_command" -f -a "bird-flush" -d 'Empty the BIRD include file(s) and have BIRD reconfigure (for systemd\'s ExecStopPost after a crash); exit 1 if BIRD could not be updated'
complete -c anycastd -n "__fish_anycastd_needs_command" -f -a "generate" -d 'Write the man page or the shell completions into a directory (for packagers)'
complete -c anycastd -n "__fish_anycastd_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c anycastd -n "__fish_anycastd_using_subcommand run" -s c -l config -d 'Configuration file, YAML (.yaml, .yml) or JSON (.json)' -r -F
complete -c anycastd -n "__fish_anycastd_using_subcommand run" -l log-level -d 'Log verbosity: trace, debug, info, warn (warning), error (fatal, panic). Logs go to stderr' -r
complete -c anycastd -n "__fish_anycastd_using_subcommand run" -l log-format -d 'Log line format' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c anycastd -n "__fish_anycastd_using_subcommand run" -l backend -d 'Announce through this backend, overriding announcer.backend of the configuration file (which also decides the keys that are required)' -r -f -a "native\t'anycastd\'s own BGP speaker'
exabgp\t'ExaBGP\'s process API on stdin/stdout'
bird\t'A BIRD include file and BIRD\'s control socket'"
complete -c anycastd -n "__fish_anycastd_using_subcommand run" -l socket -d 'The running daemon\'s control socket, for drain, undrain, check-now, reload and routes; default control.socket of the configuration file, else /run/anycastd/control/control.sock' -r -F
complete -c anycastd -n "__fish_anycastd_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c anycastd -n "__fish_anycastd_using_subcommand validate" -s c -l config -d 'Configuration file, YAML (.yaml, .yml) or JSON (.json)' -r -F
complete -c anycastd -n "__fish_anycastd_using_subcommand validate" -l log-level -d 'Log verbosity: trace, debug, info, warn (warning), error (fatal, panic). Logs go to stderr' -r
complete -c anycastd -n "__fish_anycastd_using_subcommand validate" -l log-format -d 'Log line format' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c anycastd -n "__fish_anycastd_using_subcommand validate" -l backend -d 'Announce through this backend, overriding announcer.backend of the configuration file (which also decides the keys that are required)' -r -f -a "native\t'anycastd\'s own BGP speaker'
exabgp\t'ExaBGP\'s process API on stdin/stdout'
bird\t'A BIRD include file and BIRD\'s control socket'"
complete -c anycastd -n "__fish_anycastd_using_subcommand validate" -l socket -d 'The running daemon\'s control socket, for drain, undrain, check-now, reload and routes; default control.socket of the configuration file, else /run/anycastd/control/control.sock' -r -F
complete -c anycastd -n "__fish_anycastd_using_subcommand validate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c anycastd -n "__fish_anycastd_using_subcommand check" -s c -l config -d 'Configuration file, YAML (.yaml, .yml) or JSON (.json)' -r -F
complete -c anycastd -n "__fish_anycastd_using_subcommand check" -l log-level -d 'Log verbosity: trace, debug, info, warn (warning), error (fatal, panic). Logs go to stderr' -r
complete -c anycastd -n "__fish_anycastd_using_subcommand check" -l log-format -d 'Log line format' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c anycastd -n "__fish_anycastd_using_subcommand check" -l backend -d 'Announce through this backend, overriding announcer.backend of the configuration file (which also decides the keys that are required)' -r -f -a "native\t'anycastd\'s own BGP speaker'
exabgp\t'ExaBGP\'s process API on stdin/stdout'
bird\t'A BIRD include file and BIRD\'s control socket'"
complete -c anycastd -n "__fish_anycastd_using_subcommand check" -l socket -d 'The running daemon\'s control socket, for drain, undrain, check-now, reload and routes; default control.socket of the configuration file, else /run/anycastd/control/control.sock' -r -F
complete -c anycastd -n "__fish_anycastd_using_subcommand check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c anycastd -n "__fish_anycastd_using_subcommand status" -l url -d 'Where the daemon serves its status, http://HOST:PORT[/PATH] (path /status when none is given), instead of metrics.address of the configuration file' -r -f
complete -c anycastd -n "__fish_anycastd_using_subcommand status" -s c -l config -d 'Configuration file, YAML (.yaml, .yml) or JSON (.json)' -r -F
complete -c anycastd -n "__fish_anycastd_using_subcommand status" -l log-level -d 'Log verbosity: trace, debug, info, warn (warning), error (fatal, panic). Logs go to stderr' -r
complete -c anycastd -n "__fish_anycastd_using_subcommand status" -l log-format -d 'Log line format' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c anycastd -n "__fish_anycastd_using_subcommand status" -l backend -d 'Announce through this backend, overriding announcer.backend of the configuration file (which also decides the keys that are required)' -r -f -a "native\t'anycastd\'s own BGP speaker'
exabgp\t'ExaBGP\'s process API on stdin/stdout'
bird\t'A BIRD include file and BIRD\'s control socket'"
complete -c anycastd -n "__fish_anycastd_using_subcommand status" -l socket -d 'The running daemon\'s control socket, for drain, undrain, check-now, reload and routes; default control.socket of the configuration file, else /run/anycastd/control/control.sock' -r -F
complete -c anycastd -n "__fish_anycastd_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c anycastd -n "__fish_anycastd_using_subcommand drain" -s c -l config -d 'Configuration file, YAML (.yaml, .yml) or JSON (.json)' -r -F
complete -c anycastd -n "__fish_anycastd_using_subcommand drain" -l log-level -d 'Log verbosity: trace, debug, info, warn (warning), error (fatal, panic). Logs go to stderr' -r
complete -c anycastd -n "__fish_anycastd_using_subcommand drain" -l log-format -d 'Log line format' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c anycastd -n "__fish_anycastd_using_subcommand drain" -l backend -d 'Announce through this backend, overriding announcer.backend of the configuration file (which also decides the keys that are required)' -r -f -a "native\t'anycastd\'s own BGP speaker'
exabgp\t'ExaBGP\'s process API on stdin/stdout'
bird\t'A BIRD include file and BIRD\'s control socket'"
complete -c anycastd -n "__fish_anycastd_using_subcommand drain" -l socket -d 'The running daemon\'s control socket, for drain, undrain, check-now, reload and routes; default control.socket of the configuration file, else /run/anycastd/control/control.sock' -r -F
complete -c anycastd -n "__fish_anycastd_using_subcommand drain" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c anycastd -n "__fish_anycastd_using_subcommand undrain" -s c -l config -d 'Configuration file, YAML (.yaml, .yml) or JSON (.json)' -r -F
complete -c anycastd -n "__fish_anycastd_using_subcommand undrain" -l log-level -d 'Log verbosity: trace, debug, info, warn (warning), error (fatal, panic). Logs go to stderr' -r
complete -c anycastd -n "__fish_anycastd_using_subcommand undrain" -l log-format -d 'Log line format' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c anycastd -n "__fish_anycastd_using_subcommand undrain" -l backend -d 'Announce through this backend, overriding announcer.backend of the configuration file (which also decides the keys that are required)' -r -f -a "native\t'anycastd\'s own BGP speaker'
exabgp\t'ExaBGP\'s process API on stdin/stdout'
bird\t'A BIRD include file and BIRD\'s control socket'"
complete -c anycastd -n "__fish_anycastd_using_subcommand undrain" -l socket -d 'The running daemon\'s control socket, for drain, undrain, check-now, reload and routes; default control.socket of the configuration file, else /run/anycastd/control/control.sock' -r -F
complete -c anycastd -n "__fish_anycastd_using_subcommand undrain" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c anycastd -n "__fish_anycastd_using_subcommand check-now" -s c -l config -d 'Configuration file, YAML (.yaml, .yml) or JSON (.json)' -r -F
complete -c anycastd -n "__fish_anycastd_using_subcommand check-now" -l log-level -d 'Log verbosity: trace, debug, info, warn (warning), error (fatal, panic). Logs go to stderr' -r
complete -c anycastd -n "__fish_anycastd_using_subcommand check-now" -l log-format -d 'Log line format' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c anycastd -n "__fish_anycastd_using_subcommand check-now" -l backend -d 'Announce through this backend, overriding announcer.backend of the configuration file (which also decides the keys that are required)' -r -f -a "native\t'anycastd\'s own BGP speaker'
exabgp\t'ExaBGP\'s process API on stdin/stdout'
bird\t'A BIRD include file and BIRD\'s control socket'"
complete -c anycastd -n "__fish_anycastd_using_subcommand check-now" -l socket -d 'The running daemon\'s control socket, for drain, undrain, check-now, reload and routes; default control.socket of the configuration file, else /run/anycastd/control/control.sock' -r -F
complete -c anycastd -n "__fish_anycastd_using_subcommand check-now" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c anycastd -n "__fish_anycastd_using_subcommand reload" -s c -l config -d 'Configuration file, YAML (.yaml, .yml) or JSON (.json)' -r -F
complete -c anycastd -n "__fish_anycastd_using_subcommand reload" -l log-level -d 'Log verbosity: trace, debug, info, warn (warning), error (fatal, panic). Logs go to stderr' -r
complete -c anycastd -n "__fish_anycastd_using_subcommand reload" -l log-format -d 'Log line format' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c anycastd -n "__fish_anycastd_using_subcommand reload" -l backend -d 'Announce through this backend, overriding announcer.backend of the configuration file (which also decides the keys that are required)' -r -f -a "native\t'anycastd\'s own BGP speaker'
exabgp\t'ExaBGP\'s process API on stdin/stdout'
bird\t'A BIRD include file and BIRD\'s control socket'"
complete -c anycastd -n "__fish_anycastd_using_subcommand reload" -l socket -d 'The running daemon\'s control socket, for drain, undrain, check-now, reload and routes; default control.socket of the configuration file, else /run/anycastd/control/control.sock' -r -F
complete -c anycastd -n "__fish_anycastd_using_subcommand reload" -l force -d 'Apply it even above announcer.max_withdraw'
complete -c anycastd -n "__fish_anycastd_using_subcommand reload" -l dry-run -d 'Only print what it would announce, withdraw or re-announce'
complete -c anycastd -n "__fish_anycastd_using_subcommand reload" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c anycastd -n "__fish_anycastd_using_subcommand routes" -l diff -d 'The configuration to compare with the running one; the daemon reads it, so give a path it can read' -r -F
complete -c anycastd -n "__fish_anycastd_using_subcommand routes" -s c -l config -d 'Configuration file, YAML (.yaml, .yml) or JSON (.json)' -r -F
complete -c anycastd -n "__fish_anycastd_using_subcommand routes" -l log-level -d 'Log verbosity: trace, debug, info, warn (warning), error (fatal, panic). Logs go to stderr' -r
complete -c anycastd -n "__fish_anycastd_using_subcommand routes" -l log-format -d 'Log line format' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c anycastd -n "__fish_anycastd_using_subcommand routes" -l backend -d 'Announce through this backend, overriding announcer.backend of the configuration file (which also decides the keys that are required)' -r -f -a "native\t'anycastd\'s own BGP speaker'
exabgp\t'ExaBGP\'s process API on stdin/stdout'
bird\t'A BIRD include file and BIRD\'s control socket'"
complete -c anycastd -n "__fish_anycastd_using_subcommand routes" -l socket -d 'The running daemon\'s control socket, for drain, undrain, check-now, reload and routes; default control.socket of the configuration file, else /run/anycastd/control/control.sock' -r -F
complete -c anycastd -n "__fish_anycastd_using_subcommand routes" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c anycastd -n "__fish_anycastd_using_subcommand bird-flush" -s c -l config -d 'Configuration file, YAML (.yaml, .yml) or JSON (.json)' -r -F
complete -c anycastd -n "__fish_anycastd_using_subcommand bird-flush" -l log-level -d 'Log verbosity: trace, debug, info, warn (warning), error (fatal, panic). Logs go to stderr' -r
complete -c anycastd -n "__fish_anycastd_using_subcommand bird-flush" -l log-format -d 'Log line format' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c anycastd -n "__fish_anycastd_using_subcommand bird-flush" -l backend -d 'Announce through this backend, overriding announcer.backend of the configuration file (which also decides the keys that are required)' -r -f -a "native\t'anycastd\'s own BGP speaker'
exabgp\t'ExaBGP\'s process API on stdin/stdout'
bird\t'A BIRD include file and BIRD\'s control socket'"
complete -c anycastd -n "__fish_anycastd_using_subcommand bird-flush" -l socket -d 'The running daemon\'s control socket, for drain, undrain, check-now, reload and routes; default control.socket of the configuration file, else /run/anycastd/control/control.sock' -r -F
complete -c anycastd -n "__fish_anycastd_using_subcommand bird-flush" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c anycastd -n "__fish_anycastd_using_subcommand generate" -s c -l config -d 'Configuration file, YAML (.yaml, .yml) or JSON (.json)' -r -F
complete -c anycastd -n "__fish_anycastd_using_subcommand generate" -l log-level -d 'Log verbosity: trace, debug, info, warn (warning), error (fatal, panic). Logs go to stderr' -r
complete -c anycastd -n "__fish_anycastd_using_subcommand generate" -l log-format -d 'Log line format' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c anycastd -n "__fish_anycastd_using_subcommand generate" -l backend -d 'Announce through this backend, overriding announcer.backend of the configuration file (which also decides the keys that are required)' -r -f -a "native\t'anycastd\'s own BGP speaker'
exabgp\t'ExaBGP\'s process API on stdin/stdout'
bird\t'A BIRD include file and BIRD\'s control socket'"
complete -c anycastd -n "__fish_anycastd_using_subcommand generate" -l socket -d 'The running daemon\'s control socket, for drain, undrain, check-now, reload and routes; default control.socket of the configuration file, else /run/anycastd/control/control.sock' -r -F
complete -c anycastd -n "__fish_anycastd_using_subcommand generate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c anycastd -n "__fish_anycastd_using_subcommand help; and not __fish_seen_subcommand_from run validate check status drain undrain check-now reload routes bird-flush generate help" -f -a "run" -d 'Run the daemon: check services and announce their routes (default)'
complete -c anycastd -n "__fish_anycastd_using_subcommand help; and not __fish_seen_subcommand_from run validate check status drain undrain check-now reload routes bird-flush generate help" -f -a "validate" -d 'Load and check the configuration, print a one-line summary'
complete -c anycastd -n "__fish_anycastd_using_subcommand help; and not __fish_seen_subcommand_from run validate check status drain undrain check-now reload routes bird-flush generate help" -f -a "check" -d 'Run every check once and print the results; exit 1 if a service is down'
complete -c anycastd -n "__fish_anycastd_using_subcommand help; and not __fish_seen_subcommand_from run validate check status drain undrain check-now reload routes bird-flush generate help" -f -a "status" -d 'Ask the running daemon for its status and print it; exit 1 unless every service is up'
complete -c anycastd -n "__fish_anycastd_using_subcommand help; and not __fish_seen_subcommand_from run validate check status drain undrain check-now reload routes bird-flush generate help" -f -a "drain" -d 'Drain services (every service when none are named): announce their routes with GRACEFUL_SHUTDOWN (65535:0) and the draining profile for drain_time, then withdraw them'
complete -c anycastd -n "__fish_anycastd_using_subcommand help; and not __fish_seen_subcommand_from run validate check status drain undrain check-now reload routes bird-flush generate help" -f -a "undrain" -d 'Lift drains set by `anycastd drain` (the node\'s when no service is named); routes come back once the service is up'
complete -c anycastd -n "__fish_anycastd_using_subcommand help; and not __fish_seen_subcommand_from run validate check status drain undrain check-now reload routes bird-flush generate help" -f -a "check-now" -d 'Run a round of checks of the named services (all when none) now, instead of at their next interval'
complete -c anycastd -n "__fish_anycastd_using_subcommand help; and not __fish_seen_subcommand_from run validate check status drain undrain check-now reload routes bird-flush generate help" -f -a "reload" -d 'Reload the daemon\'s configuration file (as SIGHUP does) and print the route changes; exit 1 when it is refused'
complete -c anycastd -n "__fish_anycastd_using_subcommand help; and not __fish_seen_subcommand_from run validate check status drain undrain check-now reload routes bird-flush generate help" -f -a "routes" -d 'Print what loading CONFIG would announce, withdraw or re-announce in the running daemon, without loading it'
complete -c anycastd -n "__fish_anycastd_using_subcommand help; and not __fish_seen_subcommand_from run validate check status drain undrain check-now reload routes bird-flush generate help" -f -a "bird-flush" -d 'Empty the BIRD include file(s) and have BIRD reconfigure (for systemd\'s ExecStopPost after a crash); exit 1 if BIRD could not be updated'
complete -c anycastd -n "__fish_anycastd_using_subcommand help; and not __fish_seen_subcommand_from run validate check status drain undrain check-now reload routes bird-flush generate help" -f -a "generate" -d 'Write the man page or the shell completions into a directory (for packagers)'
complete -c anycastd -n "__fish_anycastd_using_subcommand help; and not __fish_seen_subcommand_from run validate check status drain undrain check-now reload routes bird-flush generate help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
