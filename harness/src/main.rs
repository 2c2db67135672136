fn main() {
    println!("secnet");
}
