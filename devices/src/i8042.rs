//! The 8042 keyboard controller of the PC/AT, reduced to what firmware and kernels use it for
//! besides the keyboard: the A20 gate and the reset line. After the IBM PC/AT Technical
//! Reference, "Keyboard Controller": status register (OBF, IBF, system flag, command/data),
//! the command byte, the commands 0x20–0x3F/0x60–0x7F (read/write controller RAM, byte 0 being
//! the command byte), 0xAA (self-test), 0xAB (keyboard interface test), 0xAD/0xAE (disable/enable
//! keyboard), 0xD0/0xD1 (read/write output port: bit 0 system reset, bit 1 gate A20) and
//! 0xF0–0xFF (pulse output-port bits 0–3), plus 0xD2 (write keyboard output buffer, PS/2) and
//! 0xDD/0xDF (A20 off/on, a vendor extension some A20 routines try).
//!
//! Deliberate deviations, each for a reason:
//!
//! - **No keyboard and no auxiliary (mouse) port.** Nothing produces scancodes; bytes written to
//!   port 0x60 outside a controller command (keyboard commands) get no answer, so guests find no
//!   keyboard after their timeout. Auxiliary-port commands (0xA7–0xA9, 0xD3, 0xD4) are ignored,
//!   like every other unknown command, so guests find no mouse either.
//! - **No interrupts.** The controller never raises IRQ 1/12: replies to controller commands are
//!   polled through OBF, which is how firmware and kernels talk to the controller itself.
//! - **Power-on values** are those a PC leaves after POST: command byte 0x45 (keyboard
//!   interrupt, system flag, scancode translation), output port 0xCF (the 8042's port pins idle
//!   high: reset inactive, A20 enabled, keyboard/auxiliary clock and data lines high).
//! - **Reset completes at once.** Writing output-port bit 0 as 0 (0xD1) or pulsing it (0xFE and
//!   every 0xF0–0xFF command with bit 0 clear) raises a reset request for the machine
//!   ([`I8042::take_reset_request`]); the stored bit returns to 1 since the reset has happened.
//!   Pulses of bits 1–3 are too short (6 µs) to matter and are ignored.
//! - Reading port 0x60 with the output buffer empty returns the last byte it held.

use crate::RestoreError;

/// Data port: output buffer (read), input buffer data (write).
pub const DATA_PORT: u16 = 0x60;
/// Status register (read), command (write).
pub const COMMAND_PORT: u16 = 0x64;

/// Status: output buffer full.
const STATUS_OBF: u8 = 0x01;
/// Status: system flag (mirrors command-byte bit 2).
const STATUS_SYS: u8 = 0x04;
/// Status: the last write went to the command port (A2 = 1).
const STATUS_CMD: u8 = 0x08;
/// Status: keyboard not inhibited (the keylock switch is open).
const STATUS_UNLOCKED: u8 = 0x10;

/// Command byte: system flag.
const CB_SYS: u8 = 0x04;
/// Command byte: keyboard interface disabled.
const CB_KBD_DISABLED: u8 = 0x10;
/// Command byte after POST: keyboard interrupt enabled, system flag, translation.
const CB_POWER_ON: u8 = 0x45;

/// Output port: system reset line (0 = reset asserted).
const OP_RESET: u8 = 0x01;
/// Output port: gate A20.
const OP_A20: u8 = 0x02;
/// Output port after power-on: every pin high except the two OBF interrupt outputs.
const OP_POWER_ON: u8 = 0xCF;

/// Read controller RAM byte (low five bits); 0x20 reads the command byte.
const CMD_READ_RAM: u8 = 0x20;
/// Write controller RAM byte (low five bits) with the next data byte; 0x60 the command byte.
const CMD_WRITE_RAM: u8 = 0x60;
/// Controller self-test.
const CMD_SELF_TEST: u8 = 0xAA;
/// Controller self-test passed.
const SELF_TEST_OK: u8 = 0x55;
/// Keyboard interface test.
const CMD_KBD_TEST: u8 = 0xAB;
/// Keyboard interface test: no error.
const KBD_TEST_OK: u8 = 0x00;
/// Disable the keyboard interface.
const CMD_KBD_DISABLE: u8 = 0xAD;
/// Enable the keyboard interface.
const CMD_KBD_ENABLE: u8 = 0xAE;
/// Read the output port.
const CMD_READ_OUTPUT_PORT: u8 = 0xD0;
/// Write the output port with the next data byte.
const CMD_WRITE_OUTPUT_PORT: u8 = 0xD1;
/// Write the next data byte into the output buffer as if the keyboard had sent it.
const CMD_WRITE_KBD_BUFFER: u8 = 0xD2;
/// Gate A20 off.
const CMD_A20_OFF: u8 = 0xDD;
/// Gate A20 on.
const CMD_A20_ON: u8 = 0xDF;
/// First of the "pulse output port" commands (bits 0–3: 0 = pulse that bit); 0xFE resets.
const CMD_PULSE: u8 = 0xF0;

/// Bytes of controller RAM addressable by 0x20–0x3F / 0x60–0x7F.
pub const RAM_BYTES: usize = 32;

/// What the next byte written to port 0x60 is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataTarget {
    /// The keyboard (absent: the byte is dropped).
    Keyboard,
    /// Controller RAM byte `n` (0 = the command byte).
    Ram(u8),
    /// The output port.
    OutputPort,
    /// The output buffer (command 0xD2).
    OutputBuffer,
}

/// Everything the controller holds, as plain data ([`I8042::save`], [`I8042::restore`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct I8042State {
    /// Controller RAM; byte 0 is the command byte.
    pub ram: [u8; RAM_BYTES],
    /// The output port (bit 0 reset, bit 1 A20).
    pub output_port: u8,
    /// The output buffer (the last byte it held once read).
    pub output_buffer: u8,
    /// Status OBF: the output buffer holds an unread byte.
    pub output_full: bool,
    /// Status bit 3: the last write went to port 0x64.
    pub last_write_was_command: bool,
    /// Where the next data byte goes.
    pub data_target: DataTarget,
    /// A reset was asked for and not yet taken.
    pub reset_request: bool,
}

/// The keyboard controller.
#[derive(Debug)]
pub struct I8042 {
    st: I8042State,
}

impl Default for I8042 {
    fn default() -> Self {
        I8042::new()
    }
}

impl I8042 {
    /// A controller as POST leaves it (see the module header).
    pub fn new() -> I8042 {
        let mut ram = [0u8; RAM_BYTES];
        ram[0] = CB_POWER_ON;
        I8042 {
            st: I8042State {
                ram,
                output_port: OP_POWER_ON,
                output_buffer: 0,
                output_full: false,
                last_write_was_command: false,
                data_target: DataTarget::Keyboard,
                reset_request: false,
            },
        }
    }

    /// Reads port 0x60 (output buffer) or 0x64 (status); other ports read 0xFF.
    pub fn read(&mut self, port: u16) -> u8 {
        match port {
            DATA_PORT => {
                self.st.output_full = false;
                self.st.output_buffer
            }
            COMMAND_PORT => self.status(),
            _ => 0xFF,
        }
    }

    /// Writes port 0x60 (data) or 0x64 (command); writes to other ports are ignored.
    pub fn write(&mut self, port: u16, value: u8) {
        match port {
            DATA_PORT => {
                self.st.last_write_was_command = false;
                self.write_data(value);
            }
            COMMAND_PORT => {
                self.st.last_write_was_command = true;
                self.command(value);
            }
            _ => {}
        }
    }

    /// The A20 gate (output port bit 1).
    pub fn a20(&self) -> bool {
        self.st.output_port & OP_A20 != 0
    }

    /// Whether the guest asked for a system reset since the last call.
    pub fn take_reset_request(&mut self) -> bool {
        std::mem::take(&mut self.st.reset_request)
    }

    /// Whether the keyboard interface is disabled (command 0xAD, command-byte bit 4).
    pub fn keyboard_disabled(&self) -> bool {
        self.st.ram[0] & CB_KBD_DISABLED != 0
    }

    /// The device state.
    pub fn save(&self) -> I8042State {
        self.st.clone()
    }

    /// Replaces the device state with `state`.
    pub fn restore(&mut self, state: &I8042State) -> Result<(), RestoreError> {
        if let DataTarget::Ram(n) = state.data_target {
            if usize::from(n) >= RAM_BYTES {
                return Err(RestoreError::Invalid {
                    device: "i8042",
                    what: format!("pending write to RAM byte {n}"),
                });
            }
        }
        self.st = state.clone();
        Ok(())
    }

    fn status(&self) -> u8 {
        let mut status = STATUS_UNLOCKED;
        if self.st.output_full {
            status |= STATUS_OBF;
        }
        if self.st.ram[0] & CB_SYS != 0 {
            status |= STATUS_SYS;
        }
        if self.st.last_write_was_command {
            status |= STATUS_CMD;
        }
        status
    }

    /// Puts a reply in the output buffer.
    fn reply(&mut self, value: u8) {
        self.st.output_buffer = value;
        self.st.output_full = true;
    }

    fn set_output_port(&mut self, value: u8) {
        if value & OP_RESET == 0 {
            self.st.reset_request = true;
        }
        self.st.output_port = value | OP_RESET;
    }

    fn write_data(&mut self, value: u8) {
        match std::mem::replace(&mut self.st.data_target, DataTarget::Keyboard) {
            DataTarget::Keyboard => {}
            DataTarget::Ram(n) => {
                if let Some(byte) = self.st.ram.get_mut(usize::from(n)) {
                    *byte = value;
                }
            }
            DataTarget::OutputPort => self.set_output_port(value),
            DataTarget::OutputBuffer => self.reply(value),
        }
    }

    fn command(&mut self, command: u8) {
        // A new command cancels a data byte the previous one was waiting for.
        self.st.data_target = DataTarget::Keyboard;
        match command {
            CMD_READ_RAM..=0x3F => self.reply(self.st.ram[usize::from(command & 0x1F)]),
            CMD_WRITE_RAM..=0x7F => self.st.data_target = DataTarget::Ram(command & 0x1F),
            CMD_SELF_TEST => {
                self.st.ram[0] |= CB_SYS;
                self.reply(SELF_TEST_OK);
            }
            CMD_KBD_TEST => self.reply(KBD_TEST_OK),
            CMD_KBD_DISABLE => self.st.ram[0] |= CB_KBD_DISABLED,
            CMD_KBD_ENABLE => self.st.ram[0] &= !CB_KBD_DISABLED,
            CMD_READ_OUTPUT_PORT => self.reply(self.st.output_port),
            CMD_WRITE_OUTPUT_PORT => self.st.data_target = DataTarget::OutputPort,
            CMD_WRITE_KBD_BUFFER => self.st.data_target = DataTarget::OutputBuffer,
            CMD_A20_OFF => self.st.output_port &= !OP_A20,
            CMD_A20_ON => self.st.output_port |= OP_A20,
            // Pulsing bit 0 (the reset line) resets; pulses of bits 1–3 are ignored.
            CMD_PULSE..=0xFF if command & OP_RESET == 0 => self.st.reset_request = true,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command_with_reply(k: &mut I8042, command: u8) -> u8 {
        k.write(COMMAND_PORT, command);
        assert_eq!(k.read(COMMAND_PORT) & STATUS_OBF, STATUS_OBF, "reply to {command:#04x}");
        let reply = k.read(DATA_PORT);
        assert_eq!(k.read(COMMAND_PORT) & STATUS_OBF, 0);
        reply
    }

    #[test]
    fn status_after_power_on() {
        let mut k = I8042::new();
        assert_eq!(k.read(COMMAND_PORT), STATUS_UNLOCKED | STATUS_SYS);
        assert!(k.a20());
        assert!(!k.take_reset_request());
        assert_eq!(k.read(0x61), 0xFF);
    }

    #[test]
    fn self_test_and_interface_test() {
        let mut k = I8042::new();
        k.write(COMMAND_PORT, CMD_WRITE_RAM);
        k.write(DATA_PORT, 0x00);
        assert_eq!(k.read(COMMAND_PORT) & STATUS_SYS, 0);
        assert_eq!(command_with_reply(&mut k, CMD_SELF_TEST), SELF_TEST_OK);
        assert_eq!(k.read(COMMAND_PORT) & STATUS_SYS, STATUS_SYS, "self-test sets the system flag");
        assert_eq!(command_with_reply(&mut k, CMD_KBD_TEST), KBD_TEST_OK);
        assert_eq!(k.read(DATA_PORT), KBD_TEST_OK, "an empty output buffer reads its last byte");
    }

    #[test]
    fn command_byte_and_ram() {
        let mut k = I8042::new();
        assert_eq!(command_with_reply(&mut k, CMD_READ_RAM), CB_POWER_ON);
        k.write(COMMAND_PORT, CMD_WRITE_RAM);
        assert_eq!(k.read(COMMAND_PORT) & STATUS_CMD, STATUS_CMD);
        k.write(DATA_PORT, 0x61);
        assert_eq!(k.read(COMMAND_PORT) & STATUS_CMD, 0);
        assert_eq!(command_with_reply(&mut k, CMD_READ_RAM), 0x61);
        k.write(COMMAND_PORT, 0x7F);
        k.write(DATA_PORT, 0xAB);
        assert_eq!(command_with_reply(&mut k, 0x3F), 0xAB);
        // Disable/enable keyboard are stored in the command byte.
        k.write(COMMAND_PORT, CMD_KBD_DISABLE);
        assert!(k.keyboard_disabled());
        assert_eq!(command_with_reply(&mut k, CMD_READ_RAM), 0x61 | CB_KBD_DISABLED);
        k.write(COMMAND_PORT, CMD_KBD_ENABLE);
        assert!(!k.keyboard_disabled());
        // Keyboard data goes nowhere and produces nothing.
        k.write(DATA_PORT, 0xFF);
        assert_eq!(k.read(COMMAND_PORT) & STATUS_OBF, 0);
        assert_eq!(command_with_reply(&mut k, CMD_READ_RAM), 0x61);
    }

    #[test]
    fn a20_through_the_output_port_and_d_d_d_f() {
        let mut k = I8042::new();
        assert_eq!(command_with_reply(&mut k, CMD_READ_OUTPUT_PORT), OP_POWER_ON);
        k.write(COMMAND_PORT, CMD_WRITE_OUTPUT_PORT);
        k.write(DATA_PORT, 0xDD);
        assert!(!k.a20());
        assert!(!k.take_reset_request());
        assert_eq!(command_with_reply(&mut k, CMD_READ_OUTPUT_PORT), 0xDD);
        k.write(COMMAND_PORT, CMD_WRITE_OUTPUT_PORT);
        k.write(DATA_PORT, 0xDF);
        assert!(k.a20());
        k.write(COMMAND_PORT, CMD_A20_OFF);
        assert!(!k.a20());
        k.write(COMMAND_PORT, CMD_A20_ON);
        assert!(k.a20());
        // A command in between cancels the pending output-port write.
        k.write(COMMAND_PORT, CMD_WRITE_OUTPUT_PORT);
        k.write(COMMAND_PORT, CMD_KBD_ENABLE);
        k.write(DATA_PORT, 0x00);
        assert!(k.a20() && !k.take_reset_request());
    }

    #[test]
    fn reset_by_output_port_and_pulse() {
        let mut k = I8042::new();
        k.write(COMMAND_PORT, CMD_WRITE_OUTPUT_PORT);
        k.write(DATA_PORT, 0x02);
        assert!(k.take_reset_request());
        assert!(!k.take_reset_request(), "taken once");
        assert_eq!(command_with_reply(&mut k, CMD_READ_OUTPUT_PORT), 0x03, "reset completed");
        k.write(COMMAND_PORT, 0xFE);
        assert!(k.take_reset_request());
        k.write(COMMAND_PORT, 0xFF);
        assert!(!k.take_reset_request(), "0xFF pulses nothing");
        k.write(COMMAND_PORT, 0xF0);
        assert!(k.take_reset_request());
    }

    #[test]
    fn write_keyboard_output_buffer() {
        let mut k = I8042::new();
        k.write(COMMAND_PORT, CMD_WRITE_KBD_BUFFER);
        k.write(DATA_PORT, 0x1C);
        assert_eq!(k.read(COMMAND_PORT) & STATUS_OBF, STATUS_OBF);
        assert_eq!(k.read(DATA_PORT), 0x1C);
    }

    #[test]
    fn save_change_restore_compare() {
        let mut k = I8042::new();
        k.write(COMMAND_PORT, CMD_A20_OFF);
        k.write(COMMAND_PORT, CMD_SELF_TEST);
        k.write(COMMAND_PORT, CMD_WRITE_OUTPUT_PORT);
        let saved = k.save();
        k.write(DATA_PORT, 0x00);
        k.read(DATA_PORT);
        assert_ne!(k.save(), saved);
        k.restore(&saved).unwrap();
        assert_eq!(k.save(), saved);
        assert!(!k.a20());
        assert_eq!(k.read(DATA_PORT), SELF_TEST_OK);
        k.write(DATA_PORT, 0x02 | 0x01);
        assert!(k.a20(), "the pending output-port write survived");
        let mut bad = saved;
        bad.data_target = DataTarget::Ram(32);
        assert!(k.restore(&bad).is_err());
    }
}
