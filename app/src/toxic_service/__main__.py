from toxic_service.cli import main

main()
