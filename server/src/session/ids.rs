//! Session ids and session passwords, made exactly as ZooKeeper makes them.
//!
//! Owns: the initial session id of a server (`SessionTrackerImpl.initializeNextSessionId` in
//! ZooKeeper), the sequence of ids a server hands out after it, and the 16-byte session password
//! (`ZooKeeperServer.generatePasswd`), which needs a bit-exact copy of `java.util.Random`'s
//! linear congruential generator.
//!
//! Must never touch: clocks (the caller passes the monotonic millisecond value ZooKeeper would
//! read from `System.nanoTime() / 1_000_000`), sockets or files. Everything here is a pure
//! function of its arguments.
//!
//! Why bit-exactness matters: a client only echoes the password back, so any secret would do for
//! sessions we create ourselves; but a server that loads sessions created by Java ZooKeeper (its
//! snapshots and logs store only id and timeout) must recompute the same password to accept the
//! clients' reconnects. `server/tests/data/java/JavaRandomPasswords.java` and its committed
//! output are the reference the tests compare against.

/// `ephemeralOwner` of a container node (`Long.MIN_VALUE`); never a session id.
pub const CONTAINER_EPHEMERAL_OWNER: i64 = i64::MIN;

/// The constant ZooKeeper mixes into the password seed (`ZooKeeperServer.superSecret`).
pub const PASSWORD_SECRET: i64 = 0xB341_5C00;

/// Length of a session password in bytes.
pub const PASSWORD_LEN: usize = 16;

/// Server id used for session ids in standalone mode (ZooKeeper's
/// `createSessionTrackerServerId` default).
pub const STANDALONE_SERVER_ID: u64 = 1;

/// The first session id a server hands out: `((elapsed_ms << 24) >>> 8) | (server_id << 56)`.
///
/// The top byte is the server id, the next five bytes the low 40 bits of the monotonic clock in
/// milliseconds, the low two bytes zero. As in Java the shifts are on 64-bit two's complement
/// values: bits shifted out are lost, so a server id above 255 keeps only its low byte, and
/// `>>> 8` clears the top byte before the server id is ORed in. The container marker
/// ([`CONTAINER_EPHEMERAL_OWNER`]) is stepped over, as ZooKeeper does.
pub fn initial_session_id(server_id: u64, elapsed_ms: i64) -> i64 {
    let time_part = ((elapsed_ms as u64) << 24) >> 8;
    let id = (time_part | (server_id << 56)) as i64;
    if id == CONTAINER_EPHEMERAL_OWNER {
        id.wrapping_add(1)
    } else {
        id
    }
}

/// The server id encoded in a session id (its top byte, sign-extended as ZooKeeper's
/// `LeaderSessionTracker.getServerIdFromSessionId` does with `>> 56`).
pub fn server_id_of_session(session_id: i64) -> i64 {
    session_id >> 56
}

/// Hands out session ids: the initial id, then +1 per new session.
///
/// Differs from ZooKeeper in one corner: after a wrap-around ZooKeeper would hand out the
/// container marker `0x8000000000000000` or `0` (the id that means "new session" in a
/// ConnectRequest) if the counter ever reached them; this generator steps over both.
/// Neither is reachable in practice (2^16 sessions per millisecond of uptime would be needed
/// to run out of the low bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionIdGenerator {
    next: i64,
}

impl SessionIdGenerator {
    /// A generator for server `server_id` (use [`STANDALONE_SERVER_ID`] in standalone mode)
    /// started when the monotonic clock read `elapsed_ms` milliseconds.
    pub fn new(server_id: u64, elapsed_ms: i64) -> SessionIdGenerator {
        SessionIdGenerator::starting_at(initial_session_id(server_id, elapsed_ms))
    }

    /// A generator whose next id is `next` (skipping the reserved values).
    pub fn starting_at(next: i64) -> SessionIdGenerator {
        SessionIdGenerator { next: skip_reserved(next) }
    }

    /// The id [`next_id`](Self::next_id) will return.
    pub fn peek(&self) -> i64 {
        self.next
    }

    /// Takes the next session id.
    pub fn next_id(&mut self) -> i64 {
        let id = self.next;
        self.next = skip_reserved(id.wrapping_add(1));
        debug_assert!(id != 0 && id != CONTAINER_EPHEMERAL_OWNER);
        id
    }
}

fn skip_reserved(id: i64) -> i64 {
    match id {
        0 | CONTAINER_EPHEMERAL_OWNER => id.wrapping_add(1),
        _ => id,
    }
}

/// The session password ZooKeeper gives session `session_id`:
/// `new java.util.Random(session_id ^ 0xB3415C00L).nextBytes(new byte[16])`.
pub fn session_password(session_id: i64) -> [u8; PASSWORD_LEN] {
    let mut random = JavaRandom::new(session_id ^ PASSWORD_SECRET);
    let mut password = [0u8; PASSWORD_LEN];
    random.next_bytes(&mut password);
    password
}

/// A bit-exact copy of `java.util.Random` (the 48-bit linear congruential generator of
/// Knuth, TAOCP vol. 2, §3.2.1, with Java's constants), limited to what session passwords need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JavaRandom {
    seed: u64,
}

impl JavaRandom {
    const MULTIPLIER: u64 = 0x5_DEEC_E66D;
    const ADDEND: u64 = 0xB;
    const MASK: u64 = (1 << 48) - 1;

    /// `new Random(seed)`: the seed is scrambled with the multiplier and cut to 48 bits.
    pub fn new(seed: i64) -> JavaRandom {
        JavaRandom { seed: (seed as u64 ^ Self::MULTIPLIER) & Self::MASK }
    }

    /// `next(bits)`: advances the state and returns its top `bits` bits (1..=32) as Java's
    /// `(int)` cast would, i.e. sign included when `bits` is 32.
    pub fn next(&mut self, bits: u32) -> i32 {
        assert!((1..=32).contains(&bits), "next() takes 1 to 32 bits, got {bits}");
        self.seed =
            self.seed.wrapping_mul(Self::MULTIPLIER).wrapping_add(Self::ADDEND) & Self::MASK;
        (self.seed >> (48 - bits)) as u32 as i32
    }

    /// `nextInt()`.
    pub fn next_int(&mut self) -> i32 {
        self.next(32)
    }

    /// `nextBytes(bytes)`: one `nextInt()` per 4 bytes, low byte first; a final partial group
    /// still consumes a whole `nextInt()`.
    pub fn next_bytes(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(4) {
            let rnd = self.next_int().to_le_bytes();
            chunk.copy_from_slice(&rnd[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standalone_ids_look_like_zookeepers() {
        // Live 3.8.0 standalone ids look like 0x1000027887b0000: server id 1 in the top byte,
        // the clock in the middle five bytes, the low two bytes zero.
        let id = initial_session_id(STANDALONE_SERVER_ID, 0x27887b);
        assert_eq!(id, 0x0100_0027_887b_0000);
        assert_eq!(server_id_of_session(id), 1);
    }

    #[test]
    fn clock_bits_above_forty_are_dropped() {
        // (elapsed << 24) >>> 8 keeps the low 40 bits of the clock only.
        assert_eq!(initial_session_id(1, 0x100_0000_0000), 0x0100_0000_0000_0000);
        assert_eq!(initial_session_id(2, 0xff_ffff_ffff), 0x02ff_ffff_ffff_0000);
        assert_eq!(initial_session_id(1, -1), 0x01ff_ffff_ffff_0000);
    }

    #[test]
    fn container_marker_is_never_an_initial_id() {
        assert_eq!(initial_session_id(128, 0), i64::MIN + 1);
        assert_eq!(initial_session_id(128, 1 << 40), i64::MIN + 1);
    }

    #[test]
    fn generator_counts_up_and_skips_reserved_values() {
        let mut ids = SessionIdGenerator::new(1, 5);
        let first = ids.next_id();
        assert_eq!(first, 0x0100_0000_0005_0000);
        assert_eq!(ids.next_id(), first + 1);
        assert_eq!(ids.peek(), first + 2);

        let mut wrap = SessionIdGenerator::starting_at(i64::MAX);
        assert_eq!(wrap.next_id(), i64::MAX);
        assert_eq!(wrap.next_id(), i64::MIN + 1);

        let mut zero = SessionIdGenerator::starting_at(-1);
        assert_eq!(zero.next_id(), -1);
        assert_eq!(zero.next_id(), 1);
        assert_eq!(SessionIdGenerator::starting_at(0).peek(), 1);
    }

    #[test]
    fn server_id_is_sign_extended_like_java() {
        assert_eq!(server_id_of_session(0x0300_0000_0000_0001), 3);
        assert_eq!(server_id_of_session(initial_session_id(255, 1)), -1);
    }

    #[test]
    fn java_random_first_values() {
        // new Random(0).nextInt() is a well-known constant.
        let mut r = JavaRandom::new(0);
        assert_eq!(r.next_int(), -1_155_484_576);
        assert_eq!(r.next_int(), -723_955_400);
    }

    #[test]
    fn partial_groups_consume_a_whole_int() {
        let mut a = JavaRandom::new(12345);
        let mut b = JavaRandom::new(12345);
        let mut three = [0u8; 3];
        a.next_bytes(&mut three);
        let first = b.next_int().to_le_bytes();
        assert_eq!(three, first[..3]);
        assert_eq!(a, b);
    }

    /// Every line of the output of `server/tests/data/java/JavaRandomPasswords.java`, run on
    /// OpenJDK 17.
    #[test]
    fn matches_the_jdk() {
        let reference = include_str!("../../tests/data/java/java-random-passwords.txt");
        let mut checked = 0;
        for line in reference.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields[0] {
                "passwd" => {
                    let id = u64::from_str_radix(fields[1], 16).unwrap() as i64;
                    assert_eq!(hex(&session_password(id)), fields[2], "{line}");
                }
                "ints" => {
                    let mut r = JavaRandom::new(fields[1].parse().unwrap());
                    for expected in &fields[2..] {
                        assert_eq!(r.next_int(), expected.parse::<i32>().unwrap(), "{line}");
                    }
                }
                "bytes" => {
                    let mut r = JavaRandom::new(fields[1].parse().unwrap());
                    let mut out = vec![0u8; fields[2].parse().unwrap()];
                    r.next_bytes(&mut out);
                    assert_eq!(hex(&out), fields.get(3).copied().unwrap_or(""), "{line}");
                }
                "sid" => {
                    let id =
                        initial_session_id(fields[1].parse().unwrap(), fields[2].parse().unwrap());
                    // The reference prints the bare formula; initializeNextSessionId then steps
                    // over the container marker, as initial_session_id does.
                    let expected = match fields[3] {
                        "8000000000000000" => "8000000000000001",
                        other => other,
                    };
                    assert_eq!(format!("{:016x}", id as u64), expected, "{line}");
                }
                other => panic!("unknown reference line kind {other}"),
            }
            checked += 1;
        }
        assert!(checked >= 30, "reference file looks truncated");
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
