// Package wire is the protocol between the agent (pcap-server, on every
// Diego cell) and the API (pcap-server-api). It defines frames, messages
// and the version handshake; it knows nothing about Cloud Foundry, TLS or
// yamux beyond the rules written here.
//
// # Transport
//
// The agent dials the API's tunnel port, speaks TLS (client certificate
// required) and runs one hashicorp/yamux session over it, the agent being
// the yamux client. Every yamux stream carries a sequence of frames.
//
//   - The control stream is the first stream, opened by the agent. It
//     carries exactly one Hello (agent → API) answered by one Welcome or
//     Refused (API → agent). Refused is followed by the API closing the
//     session. After the handshake the stream stays open and idle; its
//     end means the session ends.
//
//     The API registers the session under the cell IPs it accepts (only
//     the connection's source address unless configured otherwise) before
//     it welcomes the agent. A second session of the same agent process
//     (same agent_id and run_id: the same replica reached through another
//     address) is Refused with reason "duplicate" and the first stays,
//     unless the first does not answer a ping within two seconds (its
//     connection died without a FIN): then the new one replaces it, as a
//     session of a restarted agent (new run_id) always does.
//
//     The agent opens no other stream and sends nothing more on the
//     control stream; if it does, the API ends the session.
//
//   - Capture streams are opened by the API, one per captured instance:
//
//     API → agent: CaptureRequest, later at most one Stop
//     agent → API: Started or Error; after Started any number of Packets
//     and Stats frames, then exactly one End, then the agent closes its
//     write side.
//
//     Either side may stop: the API sends Stop and keeps reading until End;
//     the agent sends End on its own when a limit is reached or the
//     container goes away. A stream that dies without End means the agent
//     (or the tunnel) is lost. CaptureRequest.owner (version 2) names who
//     asked for the capture.
//
//     A capture of several devices of one container (version 2) is one
//     stream too. CaptureRequest.devices lists them (at most MaxDevices,
//     4, distinct); each is known by its index in that list. The agent
//     enters the container's namespace once and opens one libpcap handle
//     per device, each with its own kernel ring and queue. Started.devices
//     says, by index, which devices started (with their link type) and
//     why the others did not (an Error each); if none started the agent
//     answers Error instead of Started. The packets come in DevicePackets
//     frames, each holding packets of one device in timestamp order;
//     frames of different devices interleave. Stats and End carry the
//     counters of each device in stats.devices, by index, and their sums
//     in the usual fields. When one device's capture ends on its own (a
//     limit, an error, the container gone), the agent stops the others
//     with the same reason, draining. An API sends devices only to agents
//     that negotiated version 2; a request without devices, or with a list
//     of one, is a capture of that device alone, answered exactly as in
//     version 1 (Packets frames, no per-device fields).
//
//   - Stop streams (version 2) are opened by the API to stop a capture
//     that another API replica streams (the replicas share nothing, but
//     each reaches every agent):
//
//     API → agent: StopCapture (capture id, app GUID, requester, admin)
//     agent → API: StopResult, then the agent closes the stream
//
//     The agent stops, draining, every stream it runs for that capture id
//     and app if the requester is the capture's owner or an admin
//     ("stopping"), refuses otherwise ("forbidden"), or knows no such
//     capture ("not_found"). The stopped streams end with End reason
//     requested; the replica streaming the capture then ends it all with
//     that reason. An API sends stop streams only to agents that
//     negotiated version 2.
//
//   - Host captures (version 3) capture the VM the agent runs on rather
//     than a container: BOSH VMs of any deployment, for operators. The
//     agent's Hello carries the VM's BOSH identity in bosh (deployment,
//     instance_group, id, index, az: the job spec's values) and says in
//     host_capture whether its operator enabled host capture. A host
//     CaptureRequest has target "host" and names the VM in bosh; it names
//     no app (app_guid, instance_guid and process_type empty, index 0).
//     The agent answers as for a container, with these differences: it
//     refuses with Error code host_capture_disabled unless host capture
//     is enabled, with wrong_instance unless bosh.id (and deployment) is
//     its own identity's, and otherwise opens the devices in its own
//     network namespace, the VM's, with the same filter compiler, limits
//     and queues as for containers. Started.container is empty. The
//     API decides which agent gets a host request: the one registered
//     under one of the director's IPs of the instance whose hello names
//     that instance's id; an API sends host requests only to agents that
//     negotiated version 3 (an older agent would read one as an app
//     capture without an app, and refuse it as a bad request).
//
//     A StopCapture of a host capture has target "host" and the
//     deployment instead of app_guid; the agent stops the capture's host
//     streams whose VM is of that deployment.
//
// # Frames
//
// All integers are big-endian.
//
//	offset  size  field
//	0       1     type (see Type)
//	1       4     payload length N, at most MaxPayload (1 MiB)
//	5       N     payload
//
// A receiver reads the 5-byte header, rejects a length above MaxPayload
// without reading or allocating it (the stream is then unusable and is
// reset), and reads exactly N payload bytes. A receiver never allocates
// more than MaxPayload for a frame whatever the input.
//
// Payloads of control frames (every type except Packets and
// DevicePackets) are one JSON object. Unknown JSON fields are ignored, so
// a newer peer may add fields to a message without a version change. The
// control frames an agent sends on a capture stream (Started, Error,
// Stats, End) are at most MaxControlPayload (32 KiB), their free text
// (messages, the container) at most MaxMessage (512 bytes, clipped by the
// sender): the API ends a stream that announces a larger one, without
// reading it.
//
// A Packets payload is a sequence of packet records, no count, no padding:
//
//	offset  size  field
//	0       8     timestamp, nanoseconds since the Unix epoch (int64)
//	8       4     captured length C (bytes of data that follow), at most MaxSnaplen
//	12      4     original length on the wire, at least C
//	16      C     packet data, starting with the link-layer header of the
//	              link type announced in Started
//
// A record that does not fit in the remaining payload, or whose lengths
// contradict each other, makes the whole frame malformed; the receiver
// discards the frame, treats the stream as broken and says so.
//
// A DevicePackets payload (version 2, type 13) is one byte, the device's
// index in CaptureRequest.devices, followed by packet records exactly as
// in a Packets payload:
//
//	offset  size  field
//	0       1     device index D, below MaxDevices and below the number of
//	              devices requested, of a device that started
//	1       ...   packet records of device D, link type as in
//	              Started.devices[D]
//
// An empty payload, an index out of range, or an index of a device that
// did not start makes the frame malformed, as a bad record does. The index
// is per frame, not per record: the agent reads each device's handle into
// batches of its own.
//
// # Unknown frame types
//
// A receiver skips a frame whose type it does not know (its length is in
// the header, so it can, reading it through a small buffer without
// holding it) and logs it once. Senders only send the types of
// the negotiated version; a later revision may add optional frames that
// older peers can safely ignore. Any change that an older peer cannot
// ignore needs a new protocol version.
//
// # Version handshake
//
// Hello carries the range of protocol versions the agent speaks
// (min_version..max_version). The API picks the highest version both speak
// and answers Welcome with it; if the ranges do not overlap it answers
// Refused with reason "unsupported_version" and the supported range, and
// closes the session. The agent then logs the refusal and retries with its
// normal backoff (an operator is expected to finish the rolling upgrade).
// A newer API therefore keeps older agents working for as long as it still
// speaks their version, and vice versa. Both sides send only frames of the
// chosen version afterwards. This package speaks versions 1 to 3;
// version 2 adds stop streams (StopCapture, StopResult),
// CaptureRequest.owner, and captures of several devices
// (CaptureRequest.devices, Started.devices, Stats.devices, DevicePackets
// frames). Version 2 was first released with all of these. Version 3 adds
// host captures: Hello.bosh and Hello.host_capture,
// CaptureRequest.target and CaptureRequest.bosh, StopCapture.target and
// StopCapture.deployment, and the Error codes host_capture_disabled and
// wrong_instance. Its fields are ignored by older peers, which is why
// the API checks the version before it sends a host request: an older
// agent keeps capturing apps, and an older API never asks for a host.
//
// The fields of version 3, in JSON:
//
//	Hello.bosh                 {"deployment": "cf", "instance_group": "router",
//	                            "id": "6a3c...", "index": 0, "az": "z1"}; absent
//	                            when the agent's config has no bosh section
//	Hello.host_capture         true when host_capture.enabled is set
//	CaptureRequest.target      "host" for the VM itself; "" or "app" for a container
//	CaptureRequest.bosh        the VM a host capture is for, as in Hello.bosh
//	StopCapture.target         "host" to stop a host capture
//	StopCapture.deployment     the deployment of the host capture to stop
package wire
