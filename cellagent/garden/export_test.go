package garden

// MaxPIDForTest is above every PID the kernel hands out.
const MaxPIDForTest = maxPID
