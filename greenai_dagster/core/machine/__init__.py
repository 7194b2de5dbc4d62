"""This machine, as the steps use it: a device slot per measurement (`device_slot`), one claim per GPU
(`gpu_claim`), untrusted code in a confined child process (`sandbox`, `_sandbox_child`), and how a child
process died, in words (`process_failure`)."""
