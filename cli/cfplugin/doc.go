// Package cfplugin is the plugin side of the cf CLI plugin protocol.
//
// The cf CLI's own Go module cannot be a dependency, so the protocol is
// spoken here with the standard library, byte for byte as the cf CLI does:
//
//   - The cf CLI starts the plugin binary as `BIN PORT ARGS...`, where PORT is
//     the cf CLI's RPC server on 127.0.0.1.
//   - `BIN PORT SendMetadata` (exactly three arguments) asks the plugin to
//     hand over its metadata with CliRpcCmd.SetPluginMetadata and exit 0.
//   - `BIN PORT CLI-MESSAGE-UNINSTALL` is sent by `cf uninstall-plugin`.
//   - `BIN PORT COMMAND ARGS...` runs a command; aliases are already replaced
//     by the command name.
//   - Before anything else the plugin pings the port: a plain TCP connect and
//     close, up to 5 tries 200 ms apart.
//   - Every RPC is net/rpc with the default gob codec over a fresh TCP
//     connection to the service "CliRpcCmd".
//
// gob matches struct fields by name and does not flatten embedded structs,
// so the types in this package keep the cf CLI's field names and nesting
// exactly (Space holds a field named SpaceFields, not Guid and Name).
package cfplugin
