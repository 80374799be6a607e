from yieldmeter.cli import main

main()
